//! Plain-text tables for the commands' text output: each column as wide as
//! its widest cell (host names and addresses of any length stay aligned),
//! two spaces between columns, the last column not padded.

/// The header and rows as aligned lines, each ending in a newline.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_the_width_of_their_widest_cell() {
        let rows = vec![
            vec!["db1".to_string(), "ok".into(), "12".into()],
            vec![
                "db-2.example.internal".to_string(),
                "FAIL".into(),
                "3".into(),
            ],
        ];
        let t = render(&["HOST", "RESULT", "MS"], &rows);
        assert_eq!(
            t,
            "HOST                   RESULT  MS\n\
             db1                    ok      12\n\
             db-2.example.internal  FAIL    3\n"
        );
    }

    #[test]
    fn no_rows_is_the_header_alone() {
        assert_eq!(render(&["A", "B"], &[]), "A  B\n");
    }
}
