//! The shared slug → site directory: each site's id and rules, read from
//! the store and kept a few seconds ([`RULES_FRESH`]), since sites change
//! rarely and hits are counted constantly. Every service that takes a
//! slug resolves it here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{CountError, Ready};
use crate::domain::{Site, SiteId, SiteRules, Slug};
use crate::store::{SiteStore, StoreError};
use crate::sync::{read, write};

/// How long a replica trusts the rules it read for a site before reading
/// them again: a change made through another replica takes effect within
/// this time everywhere.
pub const RULES_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// What the directory knows about a site.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: SiteId,
    pub rules: Arc<SiteRules>,
    read: tokio::time::Instant,
}

#[derive(Debug)]
pub struct Directory {
    store: Arc<dyn SiteStore>,
    ready: Ready,
    entries: RwLock<HashMap<Slug, Entry>>,
    /// Aliases found lately, each with its site's slug and when it was
    /// read.
    aliases: RwLock<HashMap<Slug, (Slug, tokio::time::Instant)>>,
}

impl Directory {
    pub fn new(store: Arc<dyn SiteStore>, ready: Ready) -> Self {
        Directory {
            store,
            ready,
            entries: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
        }
    }

    /// The site's id and rules: from the directory while they are fresh,
    /// else from the store (and if the store cannot answer, what the
    /// directory had, however old).
    /// A site's rules, as fresh as [`RULES_FRESH`] keeps them.
    pub async fn rules(&self, slug: &Slug) -> Result<Arc<SiteRules>, CountError> {
        Ok(self.resolve(slug).await?.rules)
    }

    pub async fn resolve(&self, slug: &Slug) -> Result<Entry, CountError> {
        let known = self.lookup(slug);
        if let Some(entry) = known.as_ref().filter(|e| e.read.elapsed() < RULES_FRESH) {
            return Ok(entry.clone());
        }
        self.ready.check()?;
        match self.store.site(slug).await {
            Ok(Some(site)) => Ok(self.remember(&site)),
            Ok(None) => {
                self.forget(slug);
                Err(CountError::NotFound)
            }
            Err(StoreError::Unavailable(_) | StoreError::Refused(_)) if known.is_some() => {
                Ok(known.expect("checked just now"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lookup(&self, slug: &Slug) -> Option<Entry> {
        read(&self.entries).get(slug).cloned()
    }

    pub fn remember(&self, site: &Site) -> Entry {
        let entry = Entry {
            id: site.id,
            rules: Arc::new(site.rules.clone()),
            read: tokio::time::Instant::now(),
        };
        write(&self.entries).insert(site.slug.clone(), entry.clone());
        entry
    }

    pub fn forget(&self, slug: &Slug) {
        write(&self.entries).remove(slug);
        write(&self.aliases).retain(|_, (of, _)| of != slug);
    }

    /// Forgets every alias found: a site's aliases changed here (other
    /// replicas read them again within [`RULES_FRESH`]).
    pub fn forget_aliases(&self) {
        write(&self.aliases).clear();
    }

    /// The slug of the site named `name`: the site whose slug it is, else
    /// the one with it as an alias (a slug wins over another site's alias,
    /// which a site can hold only if both were set at once). Both are kept
    /// as fresh as [`RULES_FRESH`].
    pub async fn named(&self, name: &Slug) -> Result<Slug, CountError> {
        let fresh = |read: &tokio::time::Instant| read.elapsed() < RULES_FRESH;
        if self.lookup(name).is_some_and(|e| fresh(&e.read)) {
            return Ok(name.clone());
        }
        if let Some((slug, _)) = read(&self.aliases).get(name).filter(|(_, r)| fresh(r)) {
            return Ok(slug.clone());
        }
        match self.resolve(name).await {
            Ok(_) => return Ok(name.clone()),
            Err(CountError::NotFound) => {}
            Err(e) => return Err(e),
        }
        match self.store.site_by_alias(name).await? {
            Some(site) => {
                self.remember(&site);
                write(&self.aliases).insert(
                    name.clone(),
                    (site.slug.clone(), tokio::time::Instant::now()),
                );
                Ok(site.slug)
            }
            None => {
                write(&self.aliases).remove(name);
                Err(CountError::NotFound)
            }
        }
    }
}
