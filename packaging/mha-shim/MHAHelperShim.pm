package MHAHelperShim;

# Compatibility shim for MHA 0.58 (mha4mysql) on Debian 12 with MariaDB 10.11.
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
# Perl programs that never load MHA are not affected: the patch is applied
# only when (and if) MHA::NodeUtil / MHA::SlaveUtil get loaded, through a
# hook at the front of @INC. Nothing is loaded eagerly.
#
# This file is original work for mha-helper (GPL-3.0-or-later); it contains
# no code from MHA.

use strict;
use warnings;

our $VERSION = '1.0';

my %PATCHERS = (
    'MHA/NodeUtil.pm'  => \&_patch_node_util,
    'MHA/SlaveUtil.pm' => \&_patch_slave_util,
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

sub _patch_slave_util {
    no strict 'refs';
    no warnings 'redefine';
    my $name = 'MHA::SlaveUtil::check_if_super_read_only';
    my $orig = defined &{$name} ? \&{$name} : undef;
    return unless $orig;
    *{$name} = sub {
        my @result;
        my $ok = eval { @result = $orig->(@_); 1 };
        return @result if $ok;
        my $err = $@;
        # MariaDB (and MySQL < 5.7.8): the variable does not exist -> off.
        return ( 0, 0 ) if $err =~ /Unknown system variable/i;
        die $err;
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
