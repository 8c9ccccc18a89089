//! Sites: their list, creation and deletion, their settings, and setting
//! or resetting a count.

use std::sync::Arc;

use super::directory::Directory;
use super::ranking::Rankings;
use super::{CountError, Ready};
use crate::cache::Cache;
use crate::domain::{
    DEFAULT_SITE_ID, NewSite, RulesPatch, Site, SiteId, SiteRules, Slug, validate_count,
    validate_name,
};
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct SiteService {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache: Arc<dyn Cache>,
    pub(super) directory: Arc<Directory>,
    pub(super) rankings: Arc<Rankings>,
    pub(super) ready: Ready,
}

impl SiteService {
    /// The site, with its current count, without counting.
    pub async fn site(&self, slug: &Slug) -> Result<Site, CountError> {
        self.ready.check()?;
        self.store.site(slug).await?.ok_or(CountError::NotFound)
    }

    pub async fn default_site(&self) -> Result<Site, CountError> {
        self.ready.check()?;
        self.store
            .site_by_id(DEFAULT_SITE_ID)
            .await?
            .ok_or(CountError::NotFound)
    }

    pub async fn sites(&self) -> Result<Vec<Site>, CountError> {
        self.ready.check()?;
        Ok(self.store.sites().await?)
    }

    /// Creates a site with its rules, checked first: a bad one writes
    /// nothing.
    pub async fn create_site(&self, mut new: NewSite) -> Result<Site, CountError> {
        validate_name(&new.name)?;
        validate_count(new.count)?;
        new.rules = new.rules.checked()?;
        self.ready.check()?;
        let site = self.store.create_site(&new).await?;
        self.directory.remember(&site);
        Ok(site)
    }

    pub async fn delete_site(&self, slug: &Slug) -> Result<(), CountError> {
        let site = self.site(slug).await?;
        if site.id == DEFAULT_SITE_ID {
            return Err(CountError::DefaultSite);
        }
        self.directory.forget(slug);
        let deleted = self.store.delete_site(site.id).await?;
        self.cache.forget(site.id);
        self.rankings.forget(site.id);
        if deleted {
            Ok(())
        } else {
            Err(CountError::NotFound)
        }
    }

    /// Sets a site's count (to import from another counter, or to reset).
    pub async fn set_count(&self, slug: &Slug, count: i64) -> Result<i64, CountError> {
        validate_count(count)?;
        let site = self.site(slug).await?;
        self.set_count_id(site.id, count).await
    }

    /// The seed's `/resetcounter`: the default site back to 0.
    pub async fn reset_default(&self) -> Result<(), CountError> {
        self.set_count_id(DEFAULT_SITE_ID, 0).await.map(drop)
    }

    async fn set_count_id(&self, id: SiteId, count: i64) -> Result<i64, CountError> {
        self.ready.check()?;
        let set = self
            .store
            .set_count(id, count)
            .await?
            .ok_or(CountError::NotFound)?;
        // A new generation: outranks every cached count from before.
        self.cache.publish(id, set);
        Ok(set.count)
    }

    /// Replaces the lists of a site's rules (kept query parameters,
    /// allowed origins) that `patch` gives. This replica uses them at once;
    /// the others within [`RULES_FRESH`].
    pub async fn set_rules(&self, slug: &Slug, patch: RulesPatch) -> Result<Site, CountError> {
        let patch = patch.checked()?;
        if let Some(own) = patch.aliases.iter().flatten().find(|a| *a == slug.as_str()) {
            return Err(CountError::InvalidInput(format!(
                "alias {own:?} is the site's own slug"
            )));
        }
        let site = self.site(slug).await?;
        let site = match self.store.set_rules(site.id, &patch).await {
            Ok(site) => site.ok_or(CountError::NotFound)?,
            Err(StoreError::Conflict) => return Err(CountError::AliasTaken),
            Err(e) => return Err(e.into()),
        };
        if patch.aliases.is_some() {
            self.directory.forget_aliases();
        }
        self.directory.remember(&site);
        Ok(site)
    }

    /// The slug of the site a peer's tracker names `name`: the site whose
    /// slug it is, else the one with it as an alias.
    pub async fn named(&self, name: &Slug) -> Result<Slug, CountError> {
        self.directory.named(name).await
    }

    /// A site's rules, as fresh as the directory keeps them.
    pub async fn rules(&self, slug: &Slug) -> Result<Arc<SiteRules>, CountError> {
        self.directory.rules(slug).await
    }
}
