//! Charts as inline SVG, drawn on the server: readable without JavaScript,
//! in any browser, and in the HTML a test fetches. Every bar and point has
//! a `<title>`, which browsers show on hover.

use std::fmt::Write as _;

use maud::{Markup, html};

use super::html::grouped;

const WIDTH: i64 = 960;
const HEIGHT: i64 = 250;
const LEFT: i64 = 64;
const RIGHT: i64 = 12;
const TOP: i64 = 12;
const BOTTOM: i64 = 28;
const PLOT_W: i64 = WIDTH - LEFT - RIGHT;
const PLOT_H: i64 = HEIGHT - TOP - BOTTOM;

/// One bar or point.
#[derive(Debug, Clone)]
pub struct Datum {
    pub value: i64,
    /// Shown on hover.
    pub title: String,
    /// Written under the axis, for some of the data.
    pub tick: Option<String>,
}

/// A vertical axis from `lo` to `hi` in steps of 1, 2 or 5 times a power of
/// ten, with four or five gridlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    lo: i64,
    hi: i64,
    step: i64,
}

impl Axis {
    fn new(min: i64, max: i64) -> Axis {
        let span = (max - min).max(1);
        let step = nice(ceil_div(span, 4));
        let lo = min.max(0).div_euclid(step) * step;
        let mut hi = ceil_div(max.max(0), step) * step;
        if hi <= lo {
            hi = lo + step;
        }
        Axis { lo, hi, step }
    }

    /// The y coordinate of `v`, in tenths of a pixel.
    fn y(&self, v: i64) -> i64 {
        let v = v.clamp(self.lo, self.hi);
        // Counts go up to 2^53: scale in 128 bits.
        let scaled =
            i128::from(v - self.lo) * i128::from(PLOT_H * 10) / i128::from(self.hi - self.lo);
        (TOP + PLOT_H) * 10 - scaled as i64
    }

    /// The gridlines and their labels.
    fn draw(&self) -> Markup {
        let lines = std::iter::successors(Some(self.lo), |v| v.checked_add(self.step))
            .take_while(|v| *v <= self.hi);
        html! {
            @for v in lines {
                @let y = self.y(v);
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(tenths(y)) y2=(tenths(y)) {}
                text class="axis" x=(LEFT - 8) y=(tenths(y + 40)) text-anchor="end" { (grouped(v)) }
            }
        }
    }
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `v`.
fn nice(v: i64) -> i64 {
    let mut p = 1i64;
    loop {
        for m in [1, 2, 5] {
            if m * p >= v {
                return m * p;
            }
        }
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => return v,
        }
    }
}

/// Tenths of a pixel as an SVG number.
fn tenths(v: i64) -> String {
    if v % 10 == 0 {
        (v / 10).to_string()
    } else {
        format!("{}.{}", v.div_euclid(10), v.rem_euclid(10))
    }
}

/// A chart of class `class` around `body`. SVG elements are closed with an
/// end tag (`<rect ...></rect>`), never left open: inside `<svg>` an HTML
/// parser keeps an unclosed start tag open around what follows.
fn chart(
    class: &str,
    label: &str,
    data: &[Datum],
    x_of: impl Fn(usize) -> i64,
    body: Markup,
) -> Markup {
    html! {
        svg class={ "chart " (class) } viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            (body)
            @for (i, d) in data.iter().enumerate() {
                @if let Some(tick) = &d.tick {
                    text class="axis" x=(tenths(x_of(i))) y=(HEIGHT - 8) text-anchor="middle" { (tick) }
                }
            }
        }
    }
}

/// One bar per datum, from zero.
pub fn bars(label: &str, data: &[Datum]) -> Markup {
    let max = data.iter().map(|d| d.value).max().unwrap_or(0);
    let axis = Axis::new(0, max);
    let n = data.len().max(1) as i64;
    let slot = PLOT_W * 10 / n;
    let gap = (slot / 5).max(10);
    let x_of = |i: usize| LEFT * 10 + i as i64 * slot;
    let base = axis.y(axis.lo);
    let body = html! {
        (axis.draw())
        @for (i, d) in data.iter().enumerate() {
            @let (x, y) = (x_of(i), axis.y(d.value));
            g class="bar" {
                title { (d.title) }
                rect class="hover" x=(tenths(x)) y=(TOP) width=(tenths(slot)) height=(PLOT_H) {}
                rect class="fill" x=(tenths(x + gap / 2)) y=(tenths(y)) width=(tenths(slot - gap))
                    height=(tenths(base - y)) {}
            }
        }
    };
    chart("bars", label, data, |i| x_of(i) + slot / 2, body)
}

/// A line through the data, with a marker per datum; the axis starts near
/// the smallest value, so a large running total still shows its slope.
pub fn line(label: &str, data: &[Datum]) -> Markup {
    let min = data.iter().map(|d| d.value).min().unwrap_or(0);
    let max = data.iter().map(|d| d.value).max().unwrap_or(0);
    let axis = Axis::new(min, max);
    let n = data.len().max(1) as i64;
    let slot = PLOT_W * 10 / n;
    let x_of = |i: usize| LEFT * 10 + i as i64 * slot + slot / 2;
    // Path data is numbers and letters only; maud escapes it like any
    // attribute, which changes nothing.
    let mut path = String::new();
    for (i, d) in data.iter().enumerate() {
        let _ = write!(
            path,
            "{}{},{} ",
            if i == 0 { "M" } else { "L" },
            tenths(x_of(i)),
            tenths(axis.y(d.value))
        );
    }
    let base = tenths(axis.y(axis.lo));
    let body = html! {
        (axis.draw())
        @if !data.is_empty() {
            path class="area"
                d={ (path) "L" (tenths(x_of(data.len() - 1))) "," (base) " L" (tenths(x_of(0))) "," (base) " Z" } {}
            path class="line" d=(path.trim_end()) {}
        }
        @for (i, d) in data.iter().enumerate() {
            g class="point" {
                title { (d.title) }
                circle cx=(tenths(x_of(i))) cy=(tenths(axis.y(d.value))) r="3.5" {}
            }
        }
    };
    chart("cumulative", label, data, x_of, body)
}

/// Width of a [`share_bar`], in CSS pixels.
const SHARE_W: i64 = 120;
const SHARE_H: i64 = 10;

/// A small horizontal bar, `value` against `max`, for a table row: an SVG
/// whose length is an attribute, since the page's policy allows no inline
/// style. It repeats a number written beside it, so it is hidden from
/// screen readers.
pub fn share_bar(value: i64, max: i64) -> Markup {
    let filled = if max <= 0 {
        0
    } else {
        let scaled = i128::from(value.clamp(0, max)) * i128::from(SHARE_W * 10) / i128::from(max);
        scaled as i64
    };
    html! {
        svg class="share" width=(SHARE_W) height=(SHARE_H)
            viewBox={ "0 0 " (SHARE_W) " " (SHARE_H) } aria-hidden="true"
            xmlns="http://www.w3.org/2000/svg" {
            rect class="track" width=(SHARE_W) height=(SHARE_H) {}
            rect class="fill" width=(tenths(filled)) height=(SHARE_H) {}
        }
    }
}

/// Length of a [`share_line`] in its own units: it stretches to its cell.
const LINE_W: i64 = 1000;

/// A thin line under a value in a panel, as long as its share of `whole`
/// (the width of the cell for all of it): an SVG stretched to the cell, for
/// the same reasons as [`share_bar`].
pub fn share_line(part: i64, whole: i64) -> Markup {
    let filled = if whole <= 0 {
        0
    } else {
        (i128::from(part.clamp(0, whole)) * i128::from(LINE_W) / i128::from(whole)) as i64
    };
    html! {
        svg class="share line" width="100%" height="4" viewBox={ "0 0 " (LINE_W) " 4" }
            preserveAspectRatio="none" aria-hidden="true" xmlns="http://www.w3.org/2000/svg" {
            rect class="track" width=(LINE_W) height="4" {}
            rect class="fill" width=(filled) height="4" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The width of the filled part of a share's SVG.
    fn fill_width(svg: &str) -> String {
        let before = "<rect class=\"fill\" width=\"";
        let start = svg.find(before).unwrap() + before.len();
        svg[start..start + svg[start..].find('"').unwrap()].to_owned()
    }

    #[test]
    fn share_lines_are_as_long_as_the_share() {
        let width = |part, whole| fill_width(&share_line(part, whole).into_string());
        assert_eq!(width(4, 4), "1000");
        assert_eq!(width(1, 4), "250");
        assert_eq!(width(1, 3), "333");
        assert_eq!(width(0, 3), "0");
        assert_eq!(width(5, 0), "0");
        assert_eq!(width(-1, 3), "0");
        assert_eq!(width(i64::MAX, i64::MAX), "1000");
        let svg = share_line(1, 2).into_string();
        assert!(
            svg.starts_with("<svg class=\"share line\" width=\"100%\""),
            "{svg}"
        );
        roxmltree::Document::parse(&svg).unwrap();
    }

    fn data(values: &[i64]) -> Vec<Datum> {
        values
            .iter()
            .map(|&value| Datum {
                value,
                title: format!("{value} <hits>"),
                tick: None,
            })
            .collect()
    }

    #[test]
    fn axes_are_round() {
        assert_eq!(nice(1), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(7), 10);
        assert_eq!(nice(11), 20);
        assert_eq!(
            Axis::new(0, 0),
            Axis {
                lo: 0,
                hi: 1,
                step: 1
            }
        );
        assert_eq!(
            Axis::new(0, 37),
            Axis {
                lo: 0,
                hi: 40,
                step: 10
            }
        );
        assert_eq!(
            Axis::new(1000, 1031),
            Axis {
                lo: 1000,
                hi: 1040,
                step: 10
            }
        );
        assert_eq!(
            Axis::new(5, 5),
            Axis {
                lo: 5,
                hi: 6,
                step: 1
            }
        );
        let huge = Axis::new(0, (1 << 53) - 1);
        assert_eq!(huge.y(huge.hi), TOP * 10);
        assert_eq!(huge.y(0), (TOP + PLOT_H) * 10);
    }

    #[test]
    fn one_bar_and_one_point_per_datum_with_escaped_titles() {
        let d = data(&[0, 3, 1]);
        let svg = bars("hits", &d).into_string();
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 3);
        assert!(svg.contains("<title>3 &lt;hits&gt;</title>"));
        let svg = line("total", &d).into_string();
        assert_eq!(svg.matches("<g class=\"point\">").count(), 3);
        assert!(line("empty", &[]).into_string().ends_with("</svg>"));
        assert!(bars("empty", &[]).into_string().ends_with("</svg>"));
    }

    #[test]
    fn labels_titles_and_ticks_are_escaped_once() {
        let label = r#"<script>"label" & 'more'</script>"#;
        let data = vec![
            Datum {
                value: 2,
                title: r#"<b title="x">2 & 3</b>"#.to_owned(),
                tick: Some(r#"<i>"t"</i>"#.to_owned()),
            },
            Datum {
                value: 5,
                title: "&amp; stays &amp;".to_owned(),
                tick: None,
            },
        ];
        for (svg, group) in [(bars(label, &data), "bar"), (line(label, &data), "point")] {
            let svg = svg.into_string();
            assert!(!svg.contains("<script"), "{svg}");
            assert!(!svg.contains("<b "), "{svg}");
            assert!(svg.contains(
                r#"aria-label="&lt;script&gt;&quot;label&quot; &amp; 'more'&lt;/script&gt;""#
            ));
            assert!(
                svg.contains("<title>&lt;b title=&quot;x&quot;&gt;2 &amp; 3&lt;/b&gt;</title>")
            );
            assert!(svg.contains("<title>&amp;amp; stays &amp;amp;</title>"));
            assert!(
                svg.contains(r#"text-anchor="middle">&lt;i&gt;&quot;t&quot;&lt;/i&gt;</text>"#)
            );
            // Well-formed XML whose text reads back exactly as given.
            let doc = roxmltree::Document::parse(&svg).unwrap();
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(root.attribute("aria-label"), Some(label));
            let titles: Vec<&str> = root
                .children()
                .filter(|n| n.attribute("class") == Some(group))
                .map(|g| g.first_element_child().unwrap().text().unwrap())
                .collect();
            assert_eq!(titles, [data[0].title.as_str(), data[1].title.as_str()]);
            let ticks: Vec<&str> = root
                .children()
                .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("middle"))
                .map(|n| n.text().unwrap())
                .collect();
            assert_eq!(ticks, [r#"<i>"t"</i>"#]);
        }
    }

    #[test]
    fn share_bars_scale_to_the_largest_value() {
        let width = |value, max| fill_width(&share_bar(value, max).into_string());
        assert_eq!(width(50, 50), "120");
        assert_eq!(width(25, 50), "60");
        assert_eq!(width(1, 3), "40");
        assert_eq!(width(2, 3), "80");
        assert_eq!(width(1, 7), "17.1");
        assert_eq!(width(0, 0), "0");
        assert_eq!(width(9, 0), "0");
        assert_eq!(width(i64::MAX, i64::MAX), "120");
        let svg = share_bar(1, 2).into_string();
        assert!(svg.starts_with("<svg class=\"share\" width=\"120\" height=\"10\""));
        assert!(svg.ends_with("</rect></svg>"), "{svg}");
        roxmltree::Document::parse(&svg).unwrap();
    }
}
