//! Time series: steps, ranges and UTC calendar arithmetic.
//!
//! The store keeps hits per UTC hour. A series sums them per hour or per
//! day over a range and fills the hours or days without hits with zeros.
//! Instants are unix seconds here ([`crate::domain::time`]).

use std::sync::Arc;
use std::time::SystemTime;

use super::{CountError, Ready};
use crate::domain::time::{END_OF_TIME, at, format_date, format_timestamp, unix};
use crate::domain::{Page, Site, Slug};
use crate::store::{PageStore, SeriesStore};

/// Most points one series may hold, so one request cannot ask for millions.
pub const MAX_POINTS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
}

impl Step {
    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "hour" => Some(Step::Hour),
            "day" => Some(Step::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Step::Hour => 3600,
            Step::Day => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Hour => "hour",
            Step::Day => "day",
        }
    }

    /// A point's time as the API writes it: a timestamp per hour, a date
    /// per day.
    pub fn format(self, unix: i64) -> String {
        match self {
            Step::Hour => format_timestamp(unix),
            Step::Day => format_date(unix),
        }
    }

    /// The latest end a range of this step may have: the start of the last
    /// step that begins in 9999, since the end is written too and rounding
    /// up could otherwise make it year 10000. No range holds the step that
    /// starts there.
    pub fn last_end(self) -> i64 {
        floor(END_OF_TIME - 1, self.seconds())
    }

    /// Whether an hour or day that starts at `t` may be stored, `now`
    /// being the current time: it starts a step, no earlier than 1970,
    /// within what a range can hold (before [`Step::last_end`]) and no
    /// later than the step that holds `now`. Else, why not.
    pub fn check_start(self, t: i64, now: i64) -> Result<(), String> {
        let (s, name) = (self.seconds(), self.name());
        let one = match self {
            Step::Hour => "an hour",
            Step::Day => "a day",
        };
        if t < 0 {
            return Err(format!("{one} starts in 1970 at the earliest"));
        }
        if t % s != 0 {
            return Err(format!("{} is not the start of {one}", self.format(t)));
        }
        let last = self.last_end();
        if t >= last {
            return Err(format!(
                "{} is past the last {name} a series can show, {}",
                self.format(t),
                self.format(last - s)
            ));
        }
        if t > floor(now, s) {
            return Err(format!("{} is after the current {name}", self.format(t)));
        }
        Ok(())
    }
}

/// A half-open range `[from, to)` of whole steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub step: Step,
    pub from: i64,
    pub to: i64,
}

impl Range {
    /// `from` rounded down and `to` rounded up to whole steps, so every point
    /// covers a whole hour or day. A missing end makes a range of
    /// `default_points` steps that ends with the step holding `now`.
    pub fn new(
        step: Step,
        from: Option<i64>,
        to: Option<i64>,
        now: i64,
        default_points: i64,
    ) -> Result<Range, CountError> {
        let s = step.seconds();
        let span = default_points * s;
        let to = match (from, to) {
            (_, Some(to)) => ceil(to, s),
            (Some(from), None) => ceil(now + 1, s).max(ceil(from + 1, s)),
            (None, None) => ceil(now + 1, s),
        };
        let last = step.last_end();
        if to > last {
            return Err(CountError::InvalidInput(format!(
                "the range must end by {} (a later end cannot be written as an RFC 3339 \
                 time): give an earlier 'to'",
                step.format(last)
            )));
        }
        let from = match from {
            Some(from) => floor(from, s),
            None => (to - span).max(0),
        };
        if from >= to {
            return Err(CountError::InvalidInput(
                "'from' must be before 'to'".into(),
            ));
        }
        let range = Range { step, from, to };
        if range.len() > MAX_POINTS {
            return Err(CountError::InvalidInput(format!(
                "the range holds {} points of one {}; at most {MAX_POINTS} are returned: \
                 narrow it or use a longer step",
                range.len(),
                step.name()
            )));
        }
        Ok(range)
    }

    /// The `points` steps that end with the one holding `now`.
    pub fn last(step: Step, points: i64, now: i64) -> Range {
        let to = ceil(now + 1, step.seconds());
        Range {
            step,
            from: to - points * step.seconds(),
            to,
        }
    }

    /// The number of points.
    pub fn len(&self) -> i64 {
        (self.to - self.from) / self.step.seconds()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn from_time(&self) -> SystemTime {
        at(self.from)
    }

    pub fn to_time(&self) -> SystemTime {
        at(self.to)
    }
}

fn floor(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

fn ceil(t: i64, step: i64) -> i64 {
    floor(t + step - 1, step)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The start of the hour or day, unix seconds.
    pub t: i64,
    pub hits: i64,
}

/// A site's hits over a range.
#[derive(Debug, Clone)]
pub struct Series {
    pub site: Site,
    pub range: Range,
    /// Hits before the range, including those in no bucket (imported and
    /// folded by retention): `before + sum(points)` is the count at `to`.
    pub before: i64,
    pub points: Vec<Point>,
}

impl Series {
    /// The count at the end of the range.
    pub fn total(&self) -> i64 {
        self.before + self.points.iter().map(|p| p.hits).sum::<i64>()
    }
}

/// Sums hourly buckets into the range's steps, with zeros where no bucket
/// falls. Buckets outside the range are ignored.
pub fn fill(range: &Range, buckets: &[(i64, i64)]) -> Vec<Point> {
    let step = range.step.seconds();
    let mut points: Vec<Point> = (0..range.len())
        .map(|i| Point {
            t: range.from + i * step,
            hits: 0,
        })
        .collect();
    for &(hour, hits) in buckets {
        if (range.from..range.to).contains(&hour) {
            let i = ((hour - range.from) / step) as usize;
            if let Some(point) = points.get_mut(i) {
                point.hits += hits;
            }
        }
    }
    points
}

#[derive(Debug)]
pub struct SeriesService {
    pub(super) store: Arc<dyn SeriesStore>,
    pub(super) pages: Arc<dyn PageStore>,
    pub(super) ready: Ready,
}

impl SeriesService {
    /// A site's series over `range`: one store query.
    pub async fn series(&self, slug: &Slug, range: Range) -> Result<Series, CountError> {
        self.ready.check()?;
        let data = self
            .store
            .series(slug, range.from_time(), range.to_time())
            .await?
            .ok_or(CountError::NotFound)?;
        let buckets: Vec<(i64, i64)> = data
            .buckets
            .iter()
            .map(|&(hour, hits)| (unix(hour), hits))
            .collect();
        Ok(Series {
            site: data.site,
            range,
            before: data.before,
            points: fill(&range, &buckets),
        })
    }

    /// One page's hits per day over a range of whole days.
    pub async fn page_series(
        &self,
        slug: &Slug,
        page: &Page,
        range: Range,
    ) -> Result<Series, CountError> {
        if range.step != Step::Day {
            return Err(CountError::InvalidInput(
                "a page's hits are kept per day: ask for step=day".into(),
            ));
        }
        self.ready.check()?;
        let day = Step::Day.seconds();
        let data = self
            .pages
            .page_series(slug, page, range.from / day..range.to / day)
            .await?
            .ok_or(CountError::NotFound)?;
        let buckets: Vec<(i64, i64)> = data.days.iter().map(|&(d, hits)| (d * day, hits)).collect();
        Ok(Series {
            site: data.site,
            range,
            before: data.before,
            points: fill(&range, &buckets),
        })
    }

    /// Folds buckets of hours before `before` into base counts.
    pub async fn prune_series(&self, before: SystemTime) -> Result<u64, CountError> {
        self.ready.check()?;
        Ok(self.store.prune_series(before).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86_400;
    /// 2026-11-23T02:30:00Z
    const NOW: i64 = 1_795_401_000;

    #[test]
    fn a_stored_hour_or_day_is_one_that_a_range_can_hold_up_to_now() {
        let check = |step: Step, t: i64, now: i64| step.check_start(t, now);
        let this_hour = NOW - NOW % H;
        assert_eq!(check(Step::Hour, 0, NOW), Ok(()));
        assert_eq!(check(Step::Hour, this_hour, NOW), Ok(()));
        assert_eq!(
            check(Step::Hour, this_hour + H, NOW),
            Err("2026-11-23T03:00:00Z is after the current hour".into())
        );
        assert_eq!(
            check(Step::Hour, this_hour + 30 * 60, NOW),
            Err("2026-11-23T02:30:00Z is not the start of an hour".into())
        );
        assert_eq!(
            check(Step::Hour, -H, NOW),
            Err("an hour starts in 1970 at the earliest".into())
        );
        // The last hour a range holds ends where a range may end at the
        // latest; the hour after it is in no range, whatever the time.
        let last = Step::Hour.last_end();
        assert_eq!(Step::Hour.format(last), "9999-12-31T23:00:00Z");
        assert!(Range::new(Step::Hour, Some(last - H), Some(last), NOW, 48).is_ok());
        assert_eq!(check(Step::Hour, last - H, END_OF_TIME), Ok(()));
        assert_eq!(
            check(Step::Hour, last, END_OF_TIME),
            Err(
                "9999-12-31T23:00:00Z is past the last hour a series can show, \
                 9999-12-31T22:00:00Z"
                    .into()
            )
        );
        let today = NOW - NOW % D;
        assert_eq!(check(Step::Day, today, NOW), Ok(()));
        assert_eq!(
            check(Step::Day, today + D, NOW),
            Err("2026-11-24 is after the current day".into())
        );
        assert_eq!(
            check(Step::Day, Step::Day.last_end(), END_OF_TIME),
            Err("9999-12-31 is past the last day a series can show, 9999-12-30".into())
        );
    }

    #[test]
    fn ranges_round_outwards_and_default_to_the_recent_past() {
        let now = 100 * D + 5 * H + 17;
        let r = Range::new(Step::Hour, None, None, now, 48).unwrap();
        assert_eq!(
            (r.from, r.to, r.len()),
            (100 * D + 6 * H - 48 * H, 100 * D + 6 * H, 48)
        );
        let r = Range::new(Step::Day, None, None, now, 30).unwrap();
        assert_eq!((r.from, r.to), (71 * D, 101 * D));
        let r = Range::new(Step::Hour, Some(10 * H + 1), Some(12 * H + 1), now, 48).unwrap();
        assert_eq!((r.from, r.to), (10 * H, 13 * H));
        let r = Range::new(Step::Day, Some(D), Some(2 * D), now, 30).unwrap();
        assert_eq!((r.from, r.to, r.len()), (D, 2 * D, 1));
        assert!(Range::new(Step::Hour, Some(2 * H), Some(2 * H), now, 48).is_err());
        assert!(Range::new(Step::Hour, Some(3 * H), Some(2 * H), now, 48).is_err());
        assert!(Range::new(Step::Hour, Some(0), Some(MAX_POINTS * H), now, 48).is_ok());
        let too_many = Range::new(Step::Hour, Some(0), Some(MAX_POINTS * H + 1), now, 48);
        assert!(too_many.unwrap_err().to_string().contains("10000"));
        assert_eq!(
            Range::last(Step::Hour, 48, now),
            Range::new(Step::Hour, None, None, now, 48).unwrap()
        );
    }

    #[test]
    fn ranges_end_where_a_four_digit_year_can_still_write_the_end() {
        let now = 100 * D;
        let last_hour = END_OF_TIME - H; // 9999-12-31T23:00:00Z
        let r = Range::new(Step::Hour, Some(last_hour - H), Some(last_hour), now, 48).unwrap();
        assert_eq!(Step::Hour.format(r.to), "9999-12-31T23:00:00Z");
        // One second later rounds up to 10000-01-01: refused, not written.
        let past = Range::new(
            Step::Hour,
            Some(last_hour - H),
            Some(last_hour + 1),
            now,
            48,
        );
        let why = past.unwrap_err().to_string();
        assert!(why.contains("must end by 9999-12-31T23:00:00Z"), "{why}");
        let last_day = END_OF_TIME - D;
        let r = Range::new(Step::Day, Some(last_day - D), Some(last_day), now, 30).unwrap();
        assert_eq!(Step::Day.format(r.to), "9999-12-31");
        let past = Range::new(Step::Day, Some(last_day - D), Some(last_day + 1), now, 30);
        assert!(
            past.unwrap_err()
                .to_string()
                .contains("must end by 9999-12-31 ")
        );
        // With no 'to', a 'from' in the last step would end it in 10000.
        assert!(Range::new(Step::Hour, Some(last_hour + 1), None, now, 48).is_err());
    }

    #[test]
    fn fill_sums_hours_into_steps_with_zeros_between() {
        let hours = Range {
            step: Step::Hour,
            from: 10 * H,
            to: 14 * H,
        };
        let buckets = [(9 * H, 100), (10 * H, 1), (12 * H, 3), (14 * H, 100)];
        let got: Vec<(i64, i64)> = fill(&hours, &buckets)
            .iter()
            .map(|p| (p.t, p.hits))
            .collect();
        assert_eq!(
            got,
            vec![(10 * H, 1), (11 * H, 0), (12 * H, 3), (13 * H, 0)]
        );
        let days = Range {
            step: Step::Day,
            from: D,
            to: 3 * D,
        };
        let buckets = [(D, 1), (D + 23 * H, 2), (2 * D + H, 4)];
        let got: Vec<(i64, i64)> = fill(&days, &buckets)
            .iter()
            .map(|p| (p.t, p.hits))
            .collect();
        assert_eq!(got, vec![(D, 3), (2 * D, 4)]);
    }
}
