use super::*;

/// 2026-11-23T02:30:00Z
const NOW: i64 = 1_795_401_000;

fn parse(doc: &str, replay: bool) -> Result<Vec<ImportEntry>, String> {
    parse_import(doc.as_bytes(), replay, NOW).map_err(|e| e.to_string())
}

#[test]
fn an_export_parses_with_its_hours_when_replayed() {
    let doc = r#"{"exported_at":"2026-11-23T02:00:00Z","sites":[
        {"slug":"blog","name":"My blog","count":1204,"base_count":1200,
         "created_at":"2026-11-20T09:12:00Z",
         "hourly":[{"t":"2026-11-23T01:00:00Z","hits":3},{"hits":1,"t":"2026-11-23T02:00:00Z"}]}]}"#;
    let blog = ImportEntry {
        slug: Slug::parse("blog").unwrap(),
        name: "My blog".into(),
        count: 1204,
        hours: Some(vec![(1_795_395_600, 3), (1_795_399_200, 1)]),
        created_at: Some(1_795_165_920),
        pages: None,
        breakdowns: Vec::new(),
    };
    assert_eq!(parse(doc, true), Ok(vec![blog.clone()]));
    let plain = ImportEntry {
        hours: None,
        ..blog
    };
    assert_eq!(parse(doc, false), Ok(vec![plain]));
    let list = parse(r#"[{"slug":"a","count":1}]"#, true).unwrap();
    assert_eq!(
        (list[0].name.as_str(), &list[0].hours),
        ("a", &Some(vec![]))
    );
}

#[test]
fn pages_are_read_with_their_days_whatever_the_hours() {
    let doc = r#"{"sites":[{"slug":"blog","count":9,"hourly":[],"pages":[
        {"page":"/posts/café","count":5,"daily":[{"d":"2026-11-22","hits":2},{"hits":3,"d":"2026-11-23"}]},
        {"count":1,"page":"(other)"}]},
        {"slug":"docs","count":0,"pages":[]},{"slug":"plain","count":1}]}"#;
    for replay in [false, true] {
        let entries = parse(doc, replay).unwrap();
        let pages: Vec<Option<Vec<PageDump>>> = entries.iter().map(|e| e.pages.clone()).collect();
        assert_eq!(
            pages,
            vec![
                Some(vec![
                    PageDump {
                        page: Page::stored("/posts/café").unwrap(),
                        count: 5,
                        days: vec![(20_779, 2), (20_780, 3)],
                    },
                    PageDump {
                        page: Page::overflow(),
                        count: 1,
                        days: vec![],
                    },
                ]),
                Some(vec![]),
                None,
            ]
        );
    }
    assert_eq!(
        crate::domain::time::format_date(20_780 * 86_400),
        "2026-11-23"
    );
}

#[test]
fn bad_pages_are_refused_naming_their_site() {
    for (doc, error) in [
        (
            r#"[{"slug":"blog","count":1,"pages":[{"page":"posts","count":1}]}]"#,
            "site \"blog\", page \"posts\": a page is a path that starts with / at line 1 column 51",
        ),
        (
            r#"[{"pages":[{"page":"/a\u0007","count":1}],"slug":"blog","count":1}]"#,
            "page \"/a\\u{7}\": a page may not contain control characters at line 1 column 30",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"page":"/b"}]}]"#,
            "duplicate field `page` at line 1 column 67",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"hits":1}]}]"#,
            "unknown field `hits`, expected one of `page`, `count`, `daily` at line 1 column 62",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"count":1}]}]"#,
            "missing field `page` at line 1 column 43",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[{"d":"2026-11-23T00:00:00Z","hits":1}]}]}]"#,
            "sites[0].pages[0].daily[0].d: \"2026-11-23T00:00:00Z\" is not a date such as \"2026-11-23\" at line 1 column 91",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[{"d":"2026-02-30","hits":1}]}]}]"#,
            "sites[0].pages[0].daily[0].d: \"2026-02-30\" is not a date such as \"2026-11-23\" at line 1 column 81",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[["2026-11-23",1]]}]}]"#,
            "invalid type: sequence, expected a day, {\"d\": …, \"hits\": …} at line 1 column 65",
        ),
        (
            r#"[{"slug":"b","count":1,"pages":{"page":"/a"}}]"#,
            "invalid type: map, expected a list of pages, {\"page\": …, \"count\": …, \"daily\": […]} at line 1 column 32",
        ),
    ] {
        assert_eq!(parse(doc, true), Err(error.to_owned()), "{doc}");
    }
}

#[test]
fn bad_values_are_refused_naming_their_field_replayed_or_not() {
    let hour = |t: &str| {
        format!(
            r#"[{{"slug":"a","count":1}},{{"slug":"b","count":1,"hourly":[{{"t":"2026-11-23T01:00:00Z","hits":1}},{{"t":"{t}","hits":1}}]}}]"#
        )
    };
    let day = |d: &str| {
        format!(
            r#"[{{"slug":"b","count":1,"pages":[{{"page":"/a","count":1}},{{"page":"/b","count":1,"daily":[{{"d":"{d}","hits":1}}]}}]}}]"#
        )
    };
    for (doc, error) in [
        (
            r#"[{"slug":"a","count":-1}]"#.to_owned(),
            "sites[0].count: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 24",
        ),
        (
            r#"[{"slug":"a","count":9007199254740992}]"#.to_owned(),
            "sites[0].count: 9007199254740992 is not a whole number from 0 to 9007199254740991 at line 1 column 38",
        ),
        (
            r#"{"sites":[{"slug":"a","count":1,"base_count":-2}]}"#.to_owned(),
            "sites[0].base_count: -2 is not a whole number from 0 to 9007199254740991 at line 1 column 48",
        ),
        (
            r#"[{"slug":"a","count":1,"hourly":[{"hits":-1,"t":"2026-11-23T01:00:00Z"}]}]"#
                .to_owned(),
            "sites[0].hourly[0].hits: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 44",
        ),
        (
            day("2026-11-23").replace(r#""hits":1}]"#, r#""hits":-1}]"#),
            "sites[0].pages[1].daily[0].hits: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 116",
        ),
        (
            r#"[{"slug":"a","count":1,"pages":[{"page":"/a","count":-1}]}]"#.to_owned(),
            "sites[0].pages[0].count: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 56",
        ),
        (
            r#"{"sites":[],"exported_at":"now"}"#.to_owned(),
            "exported_at: \"now\" is not an RFC 3339 timestamp such as \"2026-11-23T01:00:00Z\" at line 1 column 31",
        ),
        (
            hour("2026-11-23T03:00:00Z"),
            "sites[1].hourly[1].t: 2026-11-23T03:00:00Z is after the current hour at line 1 column 122",
        ),
        (
            hour("2026-11-23T02:00:00+00:30"),
            "sites[1].hourly[1].t: 2026-11-23T01:30:00Z is not the start of an hour at line 1 column 127",
        ),
        (
            hour("9999-12-31T23:00:00Z"),
            "sites[1].hourly[1].t: 9999-12-31T23:00:00Z is past the last hour a series can show, 9999-12-31T22:00:00Z at line 1 column 122",
        ),
        (
            day("2026-11-24"),
            "sites[0].pages[1].daily[0].d: 2026-11-24 is after the current day at line 1 column 106",
        ),
    ] {
        for replay in [false, true] {
            assert_eq!(parse(&doc, replay), Err(error.to_owned()), "{doc}");
        }
    }
    // The current hour and day, and an export's own timestamp, are taken.
    assert!(parse(&hour("2026-11-23T02:00:00Z"), true).is_ok());
    assert!(parse(&day("2026-11-23"), true).is_ok());
    assert!(parse(r#"{"exported_at":"2026-11-23T02:00:00Z","sites":[]}"#, true).is_ok());
}

#[test]
fn a_document_holds_a_bounded_number_of_pages_over_all_its_sites() {
    let doc = |pages: [usize; 2]| {
        let site = |slug: &str, n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"page":"/{i}","count":0}}"#))
                .collect();
            format!(
                r#"{{"slug":"{slug}","count":0,"pages":[{}]}}"#,
                list.join(",")
            )
        };
        format!("[{},{}]", site("a", pages[0]), site("b", pages[1]))
    };
    let read = |d: &str| parse_bounded(d.as_bytes(), false, NOW, 3).map_err(|e| e.to_string());
    assert!(read(&doc([2, 1])).is_ok());
    let error = read(&doc([2, 2])).unwrap_err();
    assert!(
        error.starts_with("an import holds at most 3 pages at line 1 column"),
        "{error}"
    );
    assert!(read(&doc([4, 0])).is_err());
}

#[test]
fn repeated_keys_and_arrays_for_objects_are_refused_where_they_stand() {
    for (doc, error) in [
        (
            r#"{"sites":[],"sites":[]}"#,
            "duplicate field `sites` at line 1 column 23",
        ),
        (
            r#"[{"slug":"a","count":1,"slug":"b"}]"#,
            "duplicate field `slug` at line 1 column 34",
        ),
        (
            r#"[{"slug":"a","count":1,"hourly":[{"t":"2026-11-23T01:00:00Z","hits":1,"hits":2}]}]"#,
            "duplicate field `hits` at line 1 column 79",
        ),
        (
            r#"[["a",1]]"#,
            "invalid type: sequence, expected a site, {\"slug\": …, \"count\": …} at line 1 column 2",
        ),
        (
            r#"{"sites":{"slug":"a"}}"#,
            "invalid type: map, expected a list of sites at line 1 column 10",
        ),
        (
            r#"[{"slug":"a","count":1,"hourly":[[1,2]]}]"#,
            "invalid type: sequence, expected an hour, {\"t\": …, \"hits\": …} at line 1 column 34",
        ),
        (
            "42",
            "invalid type: integer `42`, expected a list of {\"slug\", \"count\"} or an export's {\"sites\": [...]} at line 1 column 2",
        ),
    ] {
        assert_eq!(parse(doc, true), Err(error.to_owned()), "{doc}");
    }
}
