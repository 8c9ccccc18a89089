//! A site's pages: ranked over days, one page's count, names as readers
//! give them, deletion.

use std::sync::Arc;

use super::directory::Directory;
use super::ranking::{self, Rankings};
use super::{CountError, Ready};
use crate::domain::time::today;
use crate::domain::{Page, PageList, PageSelector, PageSlice, Site, Slug};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PageService {
    pub(super) store: Arc<dyn Store>,
    pub(super) directory: Arc<Directory>,
    pub(super) rankings: Arc<Rankings>,
    pub(super) ready: Ready,
}

impl PageService {
    /// Normalises a page named by a reader of `slug` by the site's rules
    /// ([`Page::named`]: `(other)`, which no hit can name, reads the
    /// overflow page).
    pub async fn page_of(&self, slug: &Slug, raw: &str) -> Result<Page, CountError> {
        let entry = self.directory.resolve(slug).await?;
        Ok(Page::named(raw, &entry.rules)?)
    }

    /// One slice of a site's pages: cut from the whole ranking of its
    /// days, kept a few seconds (see [`ranking`]), so that every slice
    /// costs about the same whatever the site's number of pages.
    pub async fn pages(&self, slug: &Slug, slice: PageSlice) -> Result<PageList, CountError> {
        self.ready.check()?;
        let site = self.store.site(slug).await?.ok_or(CountError::NotFound)?;
        let (from, to) = (slice.from, slice.to);
        if let Some(kept) = self.rankings.find(&site, from, to) {
            return Ok(kept.slice(slice.limit, slice.offset));
        }
        if site.pages < ranking::MAX_ROWS {
            let since = std::time::Instant::now();
            let all = PageSlice {
                limit: ranking::MAX_ROWS,
                offset: 0,
                ..slice
            };
            let whole = self
                .store
                .pages(slug, all)
                .await?
                .ok_or(CountError::NotFound)?;
            if !whole.more {
                let kept = self
                    .rankings
                    .keep(from, to, ranking::Ranking::new(whole, since));
                return Ok(kept.slice(slice.limit, slice.offset));
            }
        }
        // Too many pages to keep whole: the store ranks them for this slice.
        self.store
            .pages(slug, slice)
            .await?
            .ok_or(CountError::NotFound)
    }

    /// Deletes the pages of `slug` that `which` selects, with their daily
    /// hits; the site's count and series stay as they are, and its page
    /// total drops by the named pages deleted. Returns how many went. This
    /// replica's rankings of the site are forgotten whatever the outcome.
    pub async fn delete_pages(&self, slug: &Slug, which: &PageSelector) -> Result<u64, CountError> {
        let site = self.site(slug).await?;
        let deleted = self.store.delete_pages(site.id, which).await;
        self.rankings.forget(site.id);
        deleted?.ok_or(CountError::NotFound)
    }

    /// A page's count without counting: 0 for a page never hit.
    pub async fn page_count(&self, slug: &Slug, page: &Page) -> Result<i64, CountError> {
        self.ready.check()?;
        // A range that starts after today holds no day: all is before it.
        let after = today() + 1;
        let series = self
            .store
            .page_series(slug, page, after..after)
            .await?
            .ok_or(CountError::NotFound)?;
        Ok(series.before)
    }

    async fn site(&self, slug: &Slug) -> Result<Site, CountError> {
        self.ready.check()?;
        self.store.site(slug).await?.ok_or(CountError::NotFound)
    }
}
