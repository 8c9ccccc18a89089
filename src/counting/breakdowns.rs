//! Breakdowns: a site's or a page's hits per value of a dimension.

use std::sync::Arc;

use super::directory::Directory;
use super::{CountError, Ready};
use crate::domain::{BreakdownList, BreakdownQuery, Slug};
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
}
