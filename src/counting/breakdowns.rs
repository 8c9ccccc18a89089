//! Breakdowns: a site's or a page's hits per value of a dimension.

use std::sync::Arc;

use super::directory::Directory;
use super::{CountError, Ready};
use crate::domain::breakdown::Dimension;
use crate::domain::time::Day;
use crate::domain::{BreakdownList, BreakdownQuery, Slug, ValueDetail};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct BreakdownService {
    pub(super) store: Arc<dyn Store>,
    pub(super) directory: Arc<Directory>,
    pub(super) ready: Ready,
}

impl BreakdownService {
    /// One slice of `slug`'s breakdown; [`CountError::NotFound`] if there
    /// is no such site.
    pub async fn breakdown(
        &self,
        slug: &Slug,
        query: &BreakdownQuery,
    ) -> Result<BreakdownList, CountError> {
        self.ready.check()?;
        match self.store.breakdown(slug, query).await? {
            Some(list) => Ok(list),
            None => {
                self.directory.forget(slug);
                Err(CountError::NotFound)
            }
        }
    }

    /// `slug`'s hits under one value of `dimension` in the days `days`:
    /// per day, and on its `pages` pages with the most of them.
    pub async fn value_detail(
        &self,
        slug: &Slug,
        dimension: Dimension,
        value: &str,
        days: (Day, Day),
        pages: i64,
    ) -> Result<ValueDetail, CountError> {
        self.ready.check()?;
        match self
            .store
            .value_detail(slug, dimension, value, days, pages)
            .await?
        {
            Some(detail) => Ok(detail),
            None => {
                self.directory.forget(slug);
                Err(CountError::NotFound)
            }
        }
    }
}
