//! A site's top pages on the dashboard: the table, and for a signed-in
//! admin the forms that delete pages from it.

use super::*;

/// A site's top pages over whole days, and the site's hits on them.
#[derive(Debug)]
pub(super) struct TopPages {
    pub(super) days: Range,
    /// The sum of the site's series points over `days`.
    pub(super) site_hits: i64,
    pub(super) list: PageList,
    /// Whether to offer the forms that delete pages (to a signed-in admin).
    pub(super) manage: bool,
    /// How many pages the form just sent deleted.
    pub(super) deleted: Option<u64>,
    /// The dates the site's page shows, which a page's link carries when
    /// they were chosen (a page's own page shows 30 days by default).
    pub(super) period: Period,
}

impl TopPages {
    fn page_link(&self, slug: &str, page: &str) -> String {
        match self.period {
            Period::Hours48 => page_href(slug, page),
            period => page_href_over(slug, page, period),
        }
    }
}

/// Where the forms that delete a site's pages are sent: under
/// `/dashboard/sites/`, which no slug can shadow.
pub(super) fn delete_href(slug: &str) -> String {
    format!("/dashboard/sites/{slug}/pages/delete")
}

/// `POST /dashboard/sites/{slug}/pages/delete`: deletes the pages that one
/// of the site's forms names (the fields of the API's [`DeleteQuery`]),
/// then back to the site's page, which says how many went.
pub async fn delete_pages(
    _: AdminForm,
    State(state): State<Arc<AppState>>,
    slug: Result<Path<String>, PathRejection>,
    form: Result<Form<DeleteQuery>, FormRejection>,
) -> Response {
    let slug = match path_slug(slug) {
        Ok(slug) => slug,
        Err(e) => return failure(e),
    };
    let which = match form.map(|Form(form)| form.selector()) {
        Ok(Ok(which)) => which,
        Ok(Err(e)) => return error_page(StatusCode::BAD_REQUEST, "Nothing deleted", e.message()),
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Nothing deleted",
                "Send one of the forms of the site's page.",
            );
        }
    };
    match state.counting.pages.delete_pages(&slug, &which).await {
        Ok(n) => Redirect::to(&format!("{}?deleted={n}#pages", site_href(&slug))).into_response(),
        Err(e) => failure(e),
    }
}

/// The top pages table, or how to get pages when the site has none.
pub(super) fn top_pages(slug: &Slug, top: &TopPages, base: &str) -> Markup {
    let day = Step::Day.seconds();
    let (from, to) = (
        Step::Day.format(top.days.from),
        Step::Day.format(top.days.to),
    );
    let last = Step::Day.format(top.days.to - day);
    let most = top.list.pages.first().map_or(0, |p| p.hits);
    let series_api = format!("/api/v1/sites/{slug}/series?step=day&from={from}&to={to}");
    let pages_api = format!("/api/v1/sites/{slug}/pages?from={from}&to={to}");
    let action = delete_href(slug);
    html! {
        section id="pages" class="pages" {
            h2 { "Top pages" }
            @if let Some(n) = top.deleted {
                p class="notice" role="status" {
                    "Deleted " (n) " page" @if n != 1 { "s" } "."
                }
            }
            @if top.list.pages.is_empty() {
                p class="empty" {
                    strong { "No pages yet." }
                    " Hits name their page with " code { "{\"page\":\"/posts/hello\"}" }
                    " in the body of a hit, or through the pixel "
                    code { "<img src=\"" (base) "/count/" (slug) ".gif?page=/posts/hello\" alt=\"\">" }
                    "."
                }
            } @else {
                p class="note" {
                    "Hits per page on " (from) " to " (last) " (whole UTC days). Share is of the site's "
                    (grouped(top.site_hits)) " hits on those days: the sum of the points of its "
                    a href=(series_api) { "daily series" } "."
                }
                table {
                    thead {
                        tr {
                            th { "Page" }
                            th class="num" { "Hits" }
                            th class="num" { "Share" }
                            th class="num" { "All time" }
                            th { span class="sr-only" { "Hits against the top page" } }
                            @if top.manage {
                                th { span class="sr-only" { "Delete" } }
                            }
                        }
                    }
                    tbody {
                        @for p in &top.list.pages {
                            tr class="page" {
                                td class="name" { a href=(top.page_link(slug, p.page.as_str())) { (p.page.as_str()) } }
                                td class="num" { (grouped(p.hits)) }
                                td class="num" { (percent(p.hits, top.site_hits)) }
                                td class="num" { (grouped(p.count)) }
                                td class="bar" { (chart::share_bar(p.hits, most)) }
                                @if top.manage {
                                    td class="delete" {
                                        form method="post" action=(action) {
                                            input type="hidden" name="page" value=(p.page.as_str());
                                            button type="submit" aria-label={ "Delete " (p.page.as_str()) } {
                                                "Delete"
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="links" {
                    @if top.list.more {
                        "The top " (TOP_PAGES) " rows; the site has " (grouped(top.list.site.pages))
                        " pages, " (OVERFLOW_PAGE) " aside. "
                    }
                    "All pages on these days as " a href=(pages_api) { "JSON" } " or "
                    a href={ (pages_api) "&format=csv" } { "CSV" } "."
                }
                @if top.manage {
                    div class="manage" {
                        form method="post" action=(action) {
                            label {
                                "Delete the pages whose name starts with "
                                input name="prefix" required placeholder="/junk/";
                            }
                            " " button type="submit" { "Delete" }
                        }
                        form method="post" action=(action) {
                            label {
                                "Delete the pages with fewer than "
                                input name="fewer_than" type="number" min="1" required;
                                " hits on these days"
                            }
                            input type="hidden" name="from" value=(from);
                            input type="hidden" name="to" value=(to);
                            " " button type="submit" { "Delete" }
                        }
                    }
                }
            }
        }
    }
}
