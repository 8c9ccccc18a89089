//! CSV cells that a spreadsheet shows as text.
//!
//! Excel, LibreOffice and Google Sheets run a cell that starts with `=`,
//! `+`, `-` or `@` as a formula (and some skip a leading tab or carriage
//! return first), so a site named `=HYPERLINK(…)` would act when an export
//! is opened. As OWASP recommends, such a cell gets a leading `'`, which
//! those programs read as "this is text" and do not show. Every text cell
//! of every CSV that tally writes goes through [`cell`]; numbers are
//! written as they are (counts are never negative).

use std::borrow::Cow;

/// `value` as one CSV cell: neutralised if a spreadsheet would run it, and
/// quoted (RFC 4180) if it holds a separator, a quote or a line break.
pub(crate) fn cell(value: &str) -> Cow<'_, str> {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = value.contains([',', '"', '\n', '\r']);
    if !formula && !quote {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    out.push_str(&value.replace('"', "\"\""));
    if quote {
        out.push('"');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_as_it_is() {
        for plain in [
            "My blog",
            "blog.example.com",
            "2026-11-23T01:00:00Z",
            "a-b",
            "",
        ] {
            assert!(
                matches!(cell(plain), Cow::Borrowed(v) if v == plain),
                "{plain}"
            );
        }
    }

    #[test]
    fn separators_quotes_and_line_breaks_are_quoted() {
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_text() {
        assert_eq!(cell("=1+2"), "'=1+2");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\t=1"), "'\t=1");
        assert_eq!(cell("\r=1"), "\"'\r=1\"");
        assert_eq!(
            cell("=HYPERLINK(\"http://x\",\"a,b\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\""
        );
    }
}
