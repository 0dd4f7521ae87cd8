package MHAHelperShim;

# Compatibility shim for MHA 0.58 (mha4mysql) on Debian 12 with MariaDB 10.11,
# and on MySQL 8.0.22+ / 8.4 / 9.x.
#
# Load it into MHA's Perl with:
#     PERL5LIB=/path/to/this/dir PERL5OPT=-MMHAHelperShim
#
# It replaces three MHA subroutines at load time, without touching the files
# on disk:
#
#   MHA::NodeUtil::parse_mysql_version        uses the first 3 digit groups
#   MHA::NodeUtil::parse_mysql_major_version  uses the first 2 digit groups
#       Stock 0.58 feeds every digit group of the version string to sprintf;
#       "10.11.6-MariaDB-0+deb12u1-log" has six, which is fatal under
#       Perl 5.36 with MHA's "use warnings FATAL => 'all'".
#
#   MHA::SlaveUtil::check_if_super_read_only
#       MariaDB has no super_read_only; stock 0.58 dies on
#       "Unknown system variable". The shim runs the original check and
#       reads that one error as "not present, off".
#
#   SQL sent through DBD::mysql to MySQL 8.0.22 or later (MariaDB untouched)
#       MySQL 8.4 removed the statements MHA 0.58 sends (SHOW SLAVE STATUS,
#       SHOW MASTER STATUS, CHANGE MASTER TO, START/STOP/RESET SLAVE,
#       MASTER_POS_WAIT, WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS, slave_* variables)
#       and renamed the replica status columns (Source_*, Replica_*). Each
#       statement is rewritten to the current form just before it goes to
#       such a server, and each row MHA reads with fetchrow_hashref gets the
#       old column names beside the new ones. CHANGE REPLICATION SOURCE gets
#       GET_SOURCE_PUBLIC_KEY=1, which caching_sha2_password needs without TLS.
#
#   MHA::BinlogManager::init_mysqlbinlog
#       MariaDB 11's mysqlbinlog prints "mysqlbinlog from 11.8.9-MariaDB,
#       client 3.5 ..." where MHA looks for "Ver 3.4": the client version
#       after "client" is read as the mysqlbinlog version instead.
#
# Perl programs that never load MHA are not affected: the patch is applied
# only when (and if) MHA::NodeUtil / MHA::SlaveUtil get loaded, through a
# hook at the front of @INC. Nothing is loaded eagerly.
#
# This file is original work for mha-helper (GPL-3.0-or-later); it contains
# no code from MHA.

use strict;
use warnings;
use Scalar::Util ();

our $VERSION = '1.0';

my %PATCHERS = (
    'MHA/NodeUtil.pm'  => \&_patch_node_util,
    'MHA/SlaveUtil.pm' => \&_patch_slave_util,
    'DBI.pm'           => \&_patch_dbi,
    'MHA/BinlogManager.pm' => \&_patch_binlog_manager,
);
my %PATCHED;

# The first $count digit groups of a version string, zero-padded as MHA
# compares them (as strings): "10.11.6-MariaDB-0+deb12u1" -> 010011006.
sub version_key {
    my ( $str, $count ) = @_;
    my @groups = defined $str ? ( $str =~ m/(\d+)/g ) : ();
    my @used = map { defined $groups[$_] ? $groups[$_] : 0 } 0 .. $count - 1;
    return join '', map { sprintf '%03d', $_ } @used;
}

sub _patch_node_util {
    no strict 'refs';
    no warnings 'redefine';
    return unless defined &{'MHA::NodeUtil::parse_mysql_version'};
    *{'MHA::NodeUtil::parse_mysql_version'} = sub ($) {
        return version_key( $_[0], 3 );
    };
    *{'MHA::NodeUtil::parse_mysql_major_version'} = sub ($) {
        return version_key( $_[0], 2 );
    };
    return 1;
}

# Replace sub $name by one that calls it and, when it dies, returns what
# $rescue returns for the error and the arguments ($rescue rethrows what it
# does not handle).
sub _on_error {
    my ( $name, $rescue ) = @_;
    no strict 'refs';
    no warnings 'redefine';
    my $orig = defined &{$name} ? \&{$name} : undef;
    return unless $orig;
    my $wrapper = sub {
        my @result;
        my $ok = eval { @result = $orig->(@_); 1 };
        return @result if $ok;
        return $rescue->( $@, @_ );
    };
    # The same prototype as the original ("Prototype mismatch" warnings otherwise).
    my $proto = prototype $orig;
    Scalar::Util::set_prototype( \&$wrapper, $proto ) if defined $proto;
    *{$name} = $wrapper;
    return 1;
}

sub _patch_slave_util {
    return _on_error(
        'MHA::SlaveUtil::check_if_super_read_only',
        sub {
            my ($err) = @_;
            # MariaDB (and MySQL < 5.7.8): the variable does not exist -> off.
            return ( 0, 0 ) if $err =~ /Unknown system variable/i;
            die $err;
        }
    );
}

# The mysqlbinlog version in MariaDB 11's --version line, else undef.
sub mariadb_binlog_version {
    my ($line) = @_;
    return undef unless defined $line && $line =~ /MariaDB/;
    return $line =~ /\bclient (\d+\.\d+)/ ? $1 : undef;
}

sub _patch_binlog_manager {
    return _on_error(
        'MHA::BinlogManager::init_mysqlbinlog',
        sub {
            my ( $err, $self ) = @_;
            die $err unless $err =~ /version not found/;
            my $v = mariadb_binlog_version( scalar `$self->{mysqlbinlog} --version` );
            die $err unless defined $v;
            $self->{mysqlbinlog_version} = $v;
            return;
        }
    );
}

# --- MySQL 8.0.22+ -------------------------------------------------------

# The version key (see version_key) of a MySQL 8.0.22 or later server, else
# undef: MariaDB keeps every old statement and its old column names.
sub modern_mysql {
    my ($version) = @_;
    return undef if !defined $version || $version =~ /mariadb/i;
    my ( $a, $b, $c ) = $version =~ /^(\d+)\.(\d+)\.(\d+)/ or return undef;
    my $key = version_key( "$a.$b.$c", 3 );
    return $key ge version_key( '8.0.22', 3 ) ? $key : undef;
}

# The statement MHA 0.58 wrote, in the form a MySQL server of version key
# $v (8.0.22 or later) understands: each rename where that server has it.
sub modern_sql {
    my ( $sql, $v ) = @_;
    my $since = sub { $v ge version_key( $_[0], 3 ) };
    local $_ = $sql;
    s/\bSHOW\s+SLAVE\s+STATUS\b/SHOW REPLICA STATUS/gi;
    s{\bRESET\s+SLAVE\s*/\*!50516\s+ALL\s*\*/}{RESET REPLICA ALL}gi;
    s/\b(START|STOP|RESET)\s+SLAVE\b/$1 REPLICA/gi;
    # Removed in 8.0.18; the same arguments (set, 0 = no limit), 0 on success.
    s/\bWAIT_UNTIL_SQL_THREAD_AFTER_GTIDS\s*\(/WAIT_FOR_EXECUTED_GTID_SET(/gi;
    if ( $since->('8.2.0') ) {
        s/\bSHOW\s+MASTER\s+STATUS\b/SHOW BINARY LOG STATUS/gi;
    }
    if ( $since->('8.0.26') ) {
        s/\bMASTER_POS_WAIT\s*\(/SOURCE_POS_WAIT(/gi;
        s/\@\@global\.slave_parallel_workers\b/\@\@global.replica_parallel_workers/gi;
    }
    if ( $since->('8.0.23') && /^\s*CHANGE\s+MASTER\s+TO\b/i ) {
        s/^\s*CHANGE\s+MASTER\s+TO\b/CHANGE REPLICATION SOURCE TO/i;
        s/\bMASTER_(HOST|PORT|USER|PASSWORD|LOG_FILE|LOG_POS|AUTO_POSITION|CONNECT_RETRY)\b/SOURCE_$1/gi;
        $_ .= ', GET_SOURCE_PUBLIC_KEY=1' if /\bSOURCE_HOST\s*=\s*'[^']+'/i;
    }
    return $_;
}

# A row of replica status with MHA's old names added for the new ones.
sub add_old_names {
    my ($row) = @_;
    return $row unless ref $row eq 'HASH';
    for my $k ( keys %$row ) {
        ( my $old = $k ) =~ s/Source/Master/g;
        $old =~ s/Replica/Slave/g;
        $row->{$old} = $row->{$k} if $old ne $k && !exists $row->{$old};
    }
    return $row;
}

# The server's version, asked once per connection (DBD::mysql on libmariadb
# leaves mysql_serverinfo empty here) and kept in a private attribute.
sub _modern_dbh {
    my ( $dbh, $prepare ) = @_;
    my $v = $dbh->{private_mhahelper_version};
    if ( !defined $v ) {
        $v = eval {
            my $sth = $prepare->( $dbh, 'SELECT VERSION()' );
            $sth->execute;
            my ($ver) = $sth->fetchrow_array;
            $sth->finish;
            $ver;
        } // '';
        $dbh->{private_mhahelper_version} = $v;
    }
    return modern_mysql($v);
}

# DBD::mysql's methods exist only once DBI has loaded the driver (its XS
# part at run time): patch them right after DBI installs it.
sub _patch_dbi {
    no strict 'refs';
    no warnings 'redefine';
    return unless defined &{'DBI::install_driver'};
    my $install = \&{'DBI::install_driver'};
    *{'DBI::install_driver'} = sub {
        my $drh = $install->(@_);
        _patch_dbd_mysql() if defined $_[1] && $_[1] eq 'mysql';
        return $drh;
    };
    return 1;
}

my $dbd_patched;

sub _patch_dbd_mysql {
    no strict 'refs';
    no warnings 'redefine';
    return 1 if $dbd_patched;
    return unless defined &{'DBD::mysql::db::prepare'};
    $dbd_patched = 1;
    my $prepare = \&{'DBD::mysql::db::prepare'};
    *{'DBD::mysql::db::prepare'} = sub {
        my ( $dbh, $sql, @rest ) = @_;
        my $v = defined $sql ? _modern_dbh( $dbh, $prepare ) : undef;
        $sql = modern_sql( $sql, $v ) if $v;
        return $prepare->( $dbh, $sql, @rest );
    };
    if ( defined &{'DBD::mysql::db::do'} ) {
        my $do = \&{'DBD::mysql::db::do'};
        *{'DBD::mysql::db::do'} = sub ($$;$@) {
            my ( $dbh, $sql, @rest ) = @_;
            my $v = defined $sql ? _modern_dbh( $dbh, $prepare ) : undef;
            $sql = modern_sql( $sql, $v ) if $v;
            return $do->( $dbh, $sql, @rest );
        };
    }
    # DBI's own fetchrow_hashref, with the old names added where the
    # statement was a replica status.
    *{'DBD::mysql::st::fetchrow_hashref'} = sub {
        my ( $sth, @rest ) = @_;
        my $row = DBD::_::st::fetchrow_hashref( $sth, @rest );
        my $stmt = eval { $sth->{Statement} } // '';
        return $stmt =~ /\bSHOW\s+REPLICA\s+STATUS\b/i ? add_old_names($row) : $row;
    };
    return 1;
}

# Patch one module if it is loaded and not patched yet. Never dies.
sub apply {
    my ($file) = @_;
    return if $PATCHED{$file};
    return unless $INC{$file} && $PATCHERS{$file};
    my $ok = eval { $PATCHERS{$file}->() };
    $PATCHED{$file} = 1 if $ok;
    return $ok;
}

sub apply_loaded { apply($_) for sort keys %PATCHERS; return }

# @INC hook: when MHA asks for one of the patched modules, hand Perl the real
# file with a prefix that patches the module right after it is compiled
# (UNITCHECK), i.e. before anyone calls or imports from it.
sub _inc_hook {
    my ( undef, $file ) = @_;
    return unless $PATCHERS{$file};
    for my $dir (@INC) {
        next if ref $dir;
        my $path = "$dir/$file";
        next unless -f $path;
        open my $fh, '<', $path or return;
        $INC{$file} = $path;
        ( my $q = $path ) =~ s/"/\\"/g;
        my $prefix =
            "UNITCHECK { MHAHelperShim::apply('$file') }\n#line 1 \"$q\"\n";
        return ( \$prefix, $fh );
    }
    return;
}

sub import {
    apply_loaded();
    unshift @INC, \&_inc_hook unless grep { ref $_ && $_ == \&_inc_hook } @INC;
    return;
}

# Catch modules that bypassed the hook (e.g. a "use lib" put another
# directory in front of it) before the main program runs.
INIT { apply_loaded() }

1;
