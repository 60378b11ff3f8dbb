//! Plain-text tables: a header row, columns two spaces apart, numbers
//! aligned right, no trailing spaces.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.columns[i].1 {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A retention limit as the node reports it (-1 = none); milliseconds
/// also in a readable unit.
pub fn retention(value: i64, is_ms: bool) -> String {
    if value < 0 {
        "unlimited".into()
    } else if is_ms {
        format!("{value} ({})", exact_duration_ms(value))
    } else {
        value.to_string()
    }
}

/// Milliseconds in the largest unit that divides them exactly: `7d`, `36h`,
/// `1500ms`.
pub fn exact_duration_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    UNITS
        .iter()
        .find(|(size, _)| ms != 0 && ms % size == 0)
        .map_or_else(
            || format!("{ms}ms"),
            |(size, unit)| format!("{}{unit}", ms / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut t = Table::new(&[("NAME", Align::Left), ("BYTES", Align::Right)]);
        t.row(vec!["orders".into(), "123456".into()]);
        t.row(vec!["x".into(), "7".into()]);
        assert_eq!(
            t.render(),
            "NAME     BYTES\norders  123456\nx            7\n"
        );
    }

    #[test]
    fn durations_in_their_largest_exact_unit() {
        assert_eq!(exact_duration_ms(604_800_000), "7d");
        assert_eq!(exact_duration_ms(129_600_000), "36h");
        assert_eq!(exact_duration_ms(1_500), "1500ms");
        assert_eq!(exact_duration_ms(0), "0ms");
        assert_eq!(retention(-1, false), "unlimited");
        assert_eq!(retention(1024, false), "1024");
        assert_eq!(retention(3_600_000, true), "3600000 (1h)");
    }
}
