//! The dates a site's page shows: one period for the whole page, which
//! every chart, table and comparison on it follows. A preset
//! (`?range=today|48h|7d|30d|12m`) or whole UTC days from one date to
//! another (`?from=2026-11-01&to=2026-11-30`, both included). The older
//! `?view=hourly` and `?view=daily` still name the 48-hour and 30-day
//! presets.
//!
//! Each period is compared with the one before it: the same hours of the
//! day before for today, else as long a stretch just before.

use crate::counting::series::{Range, Step};
use crate::domain::time::{Day, format_date, parse_instant};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The longest stretch `from`–`to` may span, in days: two years. A day is
/// a bar of the chart; past this they grow too thin to read.
pub const MAX_CUSTOM_DAYS: i64 = 731;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The hours of the current UTC day so far.
    Today,
    /// The last 48 hours (the default of a site's page).
    Hours48,
    Days7,
    /// The last 30 days (the default of a page's page).
    Days30,
    /// The last 365 days.
    Months12,
    /// Whole UTC days, `from` to `to`, both included.
    Days {
        from: Day,
        to: Day,
    },
}

/// The presets, in the order the page offers them.
pub const PRESETS: [Period; 5] = [
    Period::Today,
    Period::Hours48,
    Period::Days7,
    Period::Days30,
    Period::Months12,
];

/// What the query said about the period, before it is read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked<'a> {
    pub view: Option<&'a str>,
    pub range: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

impl Period {
    /// The period a query names, `default` when it names none, or why it
    /// names none that can be shown; `today` is the current UTC day.
    pub fn read(asked: Asked<'_>, default: Period, today: Day) -> Result<Period, String> {
        let custom = asked.from.is_some() || asked.to.is_some();
        let named = [asked.view.is_some(), asked.range.is_some(), custom];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err("Name the dates once: a range, a view, or from and to.".into());
        }
        if let Some(view) = asked.view {
            return match view {
                "hourly" => Ok(Period::Hours48),
                "daily" => Ok(Period::Days30),
                _ => Err("The view is hourly or daily.".into()),
            };
        }
        if let Some(range) = asked.range {
            return PRESETS
                .into_iter()
                .find(|p| p.name() == Some(range))
                .ok_or_else(|| "The range is today, 48h, 7d, 30d or 12m.".into());
        }
        let (Some(from), Some(to)) = (asked.from, asked.to) else {
            if custom {
                return Err("Give both dates, from and to.".into());
            }
            return Ok(default);
        };
        let day = |s: &str| {
            (s.len() == 10)
                .then(|| parse_instant(s))
                .flatten()
                .map(|t| t / DAY)
                .ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)."))
        };
        let (from, to) = (day(from)?, day(to)?);
        if from > to {
            return Err("The first date comes after the last.".into());
        }
        if to > today {
            return Err(format!(
                "The last date is after today, {}.",
                format_date(today * DAY)
            ));
        }
        if to - from + 1 > MAX_CUSTOM_DAYS {
            return Err(format!(
                "At most {MAX_CUSTOM_DAYS} days are shown at once; the dates span {}.",
                to - from + 1
            ));
        }
        Ok(Period::Days { from, to })
    }

    /// A preset's name in the query; none for chosen dates.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Period::Today => Some("today"),
            Period::Hours48 => Some("48h"),
            Period::Days7 => Some("7d"),
            Period::Days30 => Some("30d"),
            Period::Months12 => Some("12m"),
            Period::Days { .. } => None,
        }
    }

    /// The query that names this period: `range=7d`, or
    /// `from=2026-11-01&to=2026-11-30`.
    pub fn query(self) -> String {
        match self {
            Period::Days { from, to } => format!(
                "from={}&to={}",
                format_date(from * DAY),
                format_date(to * DAY)
            ),
            preset => format!("range={}", preset.name().unwrap_or_default()),
        }
    }

    /// A preset's label on its tab.
    pub fn label(self) -> &'static str {
        match self {
            Period::Today => "Today",
            Period::Hours48 => "48 hours",
            Period::Days7 => "7 days",
            Period::Days30 => "30 days",
            Period::Months12 => "12 months",
            Period::Days { .. } => "Dates",
        }
    }

    /// The series the page charts, `now` being the current unix time:
    /// hours for today and the 48 hours, days for the rest.
    pub fn range(self, now: i64) -> Range {
        match self {
            Period::Today => Range {
                step: Step::Hour,
                from: now - now.rem_euclid(DAY),
                to: now - now.rem_euclid(HOUR) + HOUR,
            },
            Period::Hours48 => Range::last(Step::Hour, 48, now),
            Period::Days7 => Range::last(Step::Day, 7, now),
            Period::Days30 => Range::last(Step::Day, 30, now),
            Period::Months12 => Range::last(Step::Day, 365, now),
            Period::Days { from, to } => Range {
                step: Step::Day,
                from: from * DAY,
                to: (to + 1) * DAY,
            },
        }
    }

    /// The stretch this one is compared with: `range` moved back by the
    /// period's length (a whole day for today, so the same hours
    /// yesterday); `None` before 1970.
    pub fn previous(self, range: Range) -> Option<Range> {
        let back = match self {
            Period::Today => DAY,
            _ => range.to - range.from,
        };
        let from = range.from - back;
        (from >= 0).then_some(Range {
            step: range.step,
            from,
            to: range.to - back,
        })
    }

    /// The period's name and its step's, for people: ("the last 7 days",
    /// "day").
    pub fn words(self) -> (String, &'static str) {
        match self {
            Period::Today => ("today".into(), "hour"),
            Period::Hours48 => ("the last 48 hours".into(), "hour"),
            Period::Days7 => ("the last 7 days".into(), "day"),
            Period::Days30 => ("the last 30 days".into(), "day"),
            Period::Months12 => ("the last 12 months".into(), "day"),
            Period::Days { from, to } if from == to => {
                (format!("the day {}", format_date(from * DAY)), "day")
            }
            Period::Days { from, to } => (
                format!(
                    "the days {} to {}",
                    format_date(from * DAY),
                    format_date(to * DAY)
                ),
                "day",
            ),
        }
    }

    /// What the previous stretch is, for people.
    pub fn previous_words(self, previous: Range) -> String {
        match self {
            Period::Today => "the same hours yesterday".into(),
            Period::Hours48 => "the 48 hours before".into(),
            _ => {
                let days = (previous.to - previous.from) / DAY;
                format!(
                    "the {days} day{} before ({} to {})",
                    if days == 1 { "" } else { "s" },
                    format_date(previous.from),
                    format_date(previous.to - DAY)
                )
            }
        }
    }
}

/// The change from `before` to `now` in percent, to one decimal, signed:
/// `+12.5%`, `-3.0%`, `±0.0%`; `None` when there was nothing before.
pub fn change(now: i64, before: i64) -> Option<String> {
    if before <= 0 {
        return None;
    }
    // In tenths of a percent, rounded half away from zero; counts go up to
    // 2^53, so in 128 bits.
    let diff = i128::from(now) - i128::from(before);
    let before = i128::from(before);
    let tenths = (diff.abs() * 2000 + before) / (before * 2);
    let sign = match diff.signum() {
        1 => "+",
        -1 => "-",
        _ => "±",
    };
    Some(format!("{sign}{}.{}%", tenths / 10, tenths % 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Day = 20_429; // 2025-12-07

    fn read(
        view: Option<&str>,
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Period, String> {
        let asked = Asked {
            view,
            range,
            from,
            to,
        };
        Period::read(asked, Period::Hours48, TODAY)
    }

    #[test]
    fn a_query_names_a_preset_a_view_or_two_dates() {
        assert_eq!(read(None, None, None, None), Ok(Period::Hours48));
        for p in PRESETS {
            assert_eq!(read(None, p.name(), None, None), Ok(p));
            let query = p.query();
            assert_eq!(query, format!("range={}", p.name().unwrap()));
        }
        assert_eq!(read(Some("hourly"), None, None, None), Ok(Period::Hours48));
        assert_eq!(read(Some("daily"), None, None, None), Ok(Period::Days30));
        let days = read(None, None, Some("2025-11-01"), Some("2025-11-30")).unwrap();
        assert_eq!(
            days,
            Period::Days {
                from: 20_393,
                to: 20_422
            }
        );
        assert_eq!(days.query(), "from=2025-11-01&to=2025-11-30");
        // The last day may be today, and the first the same day.
        assert_eq!(
            read(None, None, Some("2025-12-07"), Some("2025-12-07")),
            Ok(Period::Days {
                from: TODAY,
                to: TODAY
            })
        );
    }

    #[test]
    fn what_cannot_be_shown_is_said() {
        for (asked, why) in [
            (
                read(Some("daily"), Some("7d"), None, None),
                "Name the dates once",
            ),
            (
                read(None, Some("7d"), Some("2025-11-01"), Some("2025-11-02")),
                "Name the dates once",
            ),
            (read(Some("weekly"), None, None, None), "hourly or daily"),
            (read(None, Some("1y"), None, None), "today, 48h"),
            (read(None, None, Some("2025-11-01"), None), "both dates"),
            (read(None, None, None, Some("2025-11-01")), "both dates"),
            (
                read(None, None, Some("2025-11-31"), Some("2025-12-01")),
                "\"2025-11-31\" is not a date",
            ),
            (
                read(None, None, Some("2025-11-01T00:00:00Z"), Some("2025-12-01")),
                "is not a date",
            ),
            (
                read(None, None, Some("2025-11-02"), Some("2025-11-01")),
                "comes after the last",
            ),
            (
                read(None, None, Some("2025-12-01"), Some("2025-12-08")),
                "after today, 2025-12-07",
            ),
            (
                read(None, None, Some("2023-12-07"), Some("2025-12-07")),
                "At most 731 days are shown at once; the dates span 732",
            ),
        ] {
            let err = asked.unwrap_err();
            assert!(err.contains(why), "{err:?} does not say {why:?}");
        }
        // 731 days is the most.
        assert!(read(None, None, Some("2023-12-08"), Some("2025-12-07")).is_ok());
    }

    #[test]
    fn each_period_charts_its_steps_and_compares_with_the_stretch_before() {
        // 2025-12-07 10:30 UTC.
        let now = TODAY * DAY + 10 * HOUR + 1800;
        let midnight = TODAY * DAY;
        for (period, (step, from, to), (prev_from, prev_to)) in [
            (
                Period::Today,
                (Step::Hour, midnight, midnight + 11 * HOUR),
                (midnight - DAY, midnight - DAY + 11 * HOUR),
            ),
            (
                Period::Hours48,
                (Step::Hour, midnight - 37 * HOUR, midnight + 11 * HOUR),
                (midnight - 85 * HOUR, midnight - 37 * HOUR),
            ),
            (
                Period::Days7,
                (Step::Day, midnight - 6 * DAY, midnight + DAY),
                (midnight - 13 * DAY, midnight - 6 * DAY),
            ),
            (
                Period::Months12,
                (Step::Day, midnight - 364 * DAY, midnight + DAY),
                (midnight - 729 * DAY, midnight - 364 * DAY),
            ),
            (
                Period::Days {
                    from: TODAY - 2,
                    to: TODAY - 1,
                },
                (Step::Day, midnight - 2 * DAY, midnight),
                (midnight - 4 * DAY, midnight - 2 * DAY),
            ),
        ] {
            let range = period.range(now);
            assert_eq!(
                (range.step, range.from, range.to),
                (step, from, to),
                "{period:?}"
            );
            let previous = period.previous(range).unwrap();
            assert_eq!(
                (previous.from, previous.to),
                (prev_from, prev_to),
                "{period:?}"
            );
        }
        // Nothing before 1970 to compare with.
        let first = Period::Days { from: 0, to: 1 };
        assert_eq!(first.previous(first.range(now)), None);
        let range = Period::Days7.range(now);
        assert_eq!(
            Period::Days7.previous_words(Period::Days7.previous(range).unwrap()),
            "the 7 days before (2025-11-24 to 2025-11-30)"
        );
    }

    #[test]
    fn change_is_signed_to_one_decimal() {
        assert_eq!(change(1125, 1000).as_deref(), Some("+12.5%"));
        assert_eq!(change(970, 1000).as_deref(), Some("-3.0%"));
        assert_eq!(change(5, 5).as_deref(), Some("±0.0%"));
        assert_eq!(change(2, 3).as_deref(), Some("-33.3%"));
        assert_eq!(change(1, 3).as_deref(), Some("-66.7%"));
        assert_eq!(change(3, 0), None);
        assert_eq!(
            change(1 << 53, 1).as_deref(),
            Some("+900719925474099100.0%")
        );
    }
}
