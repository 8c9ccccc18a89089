//! Charts as inline SVG, drawn on the server: readable without JavaScript,
//! in any browser, and in the HTML a test fetches. Every bar and point has
//! a `<title>`, which browsers show on hover.

use std::fmt::Write as _;

use super::html::{Esc, grouped};

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

    fn draw(&self, svg: &mut String) {
        let mut v = self.lo;
        while v <= self.hi {
            let y = self.y(v);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\
                 <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                tenths(y),
                tenths(y),
                LEFT - 8,
                tenths(y + 40),
                grouped(v)
            );
            v += self.step;
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

fn open(svg: &mut String, class: &str, label: &str) {
    let _ = write!(
        svg,
        "<svg class=\"chart {class}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        Esc(label)
    );
}

fn ticks(svg: &mut String, data: &[Datum], x_of: impl Fn(usize) -> i64) {
    for (i, d) in data.iter().enumerate() {
        if let Some(tick) = &d.tick {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                tenths(x_of(i)),
                HEIGHT - 8,
                Esc(tick)
            );
        }
    }
}

/// One bar per datum, from zero.
pub fn bars(label: &str, data: &[Datum]) -> String {
    let max = data.iter().map(|d| d.value).max().unwrap_or(0);
    let axis = Axis::new(0, max);
    let n = data.len().max(1) as i64;
    let slot = PLOT_W * 10 / n;
    let gap = (slot / 5).max(10);
    let mut svg = String::with_capacity(300 + data.len() * 260);
    open(&mut svg, "bars", label);
    axis.draw(&mut svg);
    for (i, d) in data.iter().enumerate() {
        let x = LEFT * 10 + i as i64 * slot;
        let y = axis.y(d.value);
        let base = axis.y(axis.lo);
        let _ = write!(
            svg,
            "<g class=\"bar\"><title>{}</title>\
             <rect class=\"hover\" x=\"{}\" y=\"{TOP}\" width=\"{}\" height=\"{PLOT_H}\"/>\
             <rect class=\"fill\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></g>",
            Esc(&d.title),
            tenths(x),
            tenths(slot),
            tenths(x + gap / 2),
            tenths(y),
            tenths(slot - gap),
            tenths(base - y),
        );
    }
    ticks(&mut svg, data, |i| LEFT * 10 + i as i64 * slot + slot / 2);
    svg.push_str("</svg>");
    svg
}

/// A line through the data, with a marker per datum; the axis starts near
/// the smallest value, so a large running total still shows its slope.
pub fn line(label: &str, data: &[Datum]) -> String {
    let min = data.iter().map(|d| d.value).min().unwrap_or(0);
    let max = data.iter().map(|d| d.value).max().unwrap_or(0);
    let axis = Axis::new(min, max);
    let n = data.len().max(1) as i64;
    let slot = PLOT_W * 10 / n;
    let x_of = |i: usize| LEFT * 10 + i as i64 * slot + slot / 2;
    let mut svg = String::with_capacity(400 + data.len() * 200);
    open(&mut svg, "cumulative", label);
    axis.draw(&mut svg);
    if !data.is_empty() {
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
        let _ = write!(
            svg,
            "<path class=\"area\" d=\"{path}L{},{base} L{},{base} Z\"/>\
             <path class=\"line\" d=\"{}\"/>",
            tenths(x_of(data.len() - 1)),
            tenths(x_of(0)),
            path.trim_end()
        );
    }
    for (i, d) in data.iter().enumerate() {
        let _ = write!(
            svg,
            "<g class=\"point\"><title>{}</title><circle cx=\"{}\" cy=\"{}\" r=\"3.5\"/></g>",
            Esc(&d.title),
            tenths(x_of(i)),
            tenths(axis.y(d.value))
        );
    }
    ticks(&mut svg, data, x_of);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let svg = bars("hits", &d);
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 3);
        assert!(svg.contains("<title>3 &lt;hits&gt;</title>"));
        let svg = line("total", &d);
        assert_eq!(svg.matches("<g class=\"point\">").count(), 3);
        assert!(line("empty", &[]).ends_with("</svg>"));
        assert!(bars("empty", &[]).ends_with("</svg>"));
    }
}
