//! CSV uploads: RFC 4180 quoting, BOM, header checks, ragged rows by line number.

use super::*;

fn rec(to: &str, data: &[(&str, &str)], line: u64) -> Recipient {
    Recipient {
        to: to.into(),
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        line: Some(line),
    }
}

fn csv_problems(input: &[u8]) -> Vec<(String, &'static str)> {
    pairs(&parse_csv(input).expect_err("refused"))
}

#[test]
fn quoted_fields_commas_newlines_and_quotes() {
    let input = "to,thing1,amount2\r\n\
                 o1,\"Apples, pears\",¥9.90\r\n\
                 o2,\"two\nlines\",\r\n\
                 \"o3\",\"say \"\"hi\"\"\",¥1\r\n";
    assert_eq!(
        parse_csv(input.as_bytes()).unwrap(),
        vec![
            rec(
                "o1",
                &[("thing1", "Apples, pears"), ("amount2", "¥9.90")],
                2
            ),
            // An empty cell is no override: the campaign default applies.
            rec("o2", &[("thing1", "two\nlines")], 3),
            rec("o3", &[("thing1", "say \"hi\""), ("amount2", "¥1")], 5),
        ]
    );
}

#[test]
fn bom_and_padded_header_names_are_accepted() {
    let got = parse_csv("\u{FEFF}to , thing1\no1,中文\n".as_bytes()).unwrap();
    assert_eq!(got, vec![rec("o1", &[("thing1", "中文")], 2)]);
}

#[test]
fn to_column_is_required_and_names_are_unique() {
    assert_eq!(
        csv_problems(b"openid,thing1\no1,x\n"),
        one("line 1", "missing_column")
    );
    assert_eq!(
        csv_problems(b"to,thing1,thing1\no1,x,y\n"),
        one("line 1", "duplicate_column")
    );
    assert_eq!(
        csv_problems(b"to,,thing1\no1,x,y\n"),
        one("line 1", "empty_column_name")
    );
    assert_eq!(csv_problems(b""), one("line 1", "missing_header"));
}

#[test]
fn ragged_rows_are_named_by_line() {
    let got = csv_problems(b"to,thing1\no1,x\no2\no3,x,extra\n\"o4\",\"a\nb\"\no5\n");
    assert_eq!(
        got,
        vec![
            ("line 3".to_owned(), "ragged_row"),
            ("line 4".to_owned(), "ragged_row"),
            ("line 7".to_owned(), "ragged_row")
        ]
    );
    let e = parse_csv(b"to,thing1\no2\n").unwrap_err();
    assert_eq!(e.errors[0].message, "line 2 has 1 fields, the header has 2");
}

#[test]
fn blank_lines_are_skipped() {
    let got = parse_csv(b"to\n\no1\n\no2\n").unwrap();
    assert_eq!(got, vec![rec("o1", &[], 3), rec("o2", &[], 5)]);
}

#[test]
fn non_utf8_is_refused_with_its_line() {
    // "中" in GBK, as Excel saves CSV on Chinese Windows.
    let got = csv_problems(b"to,thing1\no1,ok\no2,\xD6\xD0\n");
    assert_eq!(got, one("line 3", "not_utf8"));
}

#[test]
fn only_the_to_column_is_fine() {
    assert_eq!(
        parse_csv(b"to\nu1\nu2").unwrap(),
        vec![rec("u1", &[], 2), rec("u2", &[], 3)]
    );
}
