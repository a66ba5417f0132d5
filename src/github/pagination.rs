//! Reading GitHub's `Link` header, which is how every list endpoint says
//! where its next page is.

/// The target of the link whose `rel` includes `next`, if any.
///
/// The header is a comma-separated list of `<url>; param=value` entries. URLs
/// are delimited by angle brackets rather than split on commas, because a URL
/// may itself contain a comma.
pub(crate) fn next_page_url(link_header: &str) -> Option<&str> {
    let mut rest = link_header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let url = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // Parameters run until the next entry's opening bracket.
        let params_end = after.find('<').unwrap_or(after.len());
        if after[..params_end].split(';').any(is_rel_next) {
            return Some(url.trim());
        }
        rest = &after[params_end..];
    }
}

fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_end_matches(',')
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next_among_github_links() {
        let header = r#"<https://api.github.com/orgs/acme/actions/runners?per_page=100&page=2>; rel="next", <https://api.github.com/orgs/acme/actions/runners?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_page_url(header),
            Some("https://api.github.com/orgs/acme/actions/runners?per_page=100&page=2")
        );
    }

    #[test]
    fn next_may_come_after_other_links() {
        let header = r#"<http://127.0.0.1:1/x?page=1>; rel="prev", <http://127.0.0.1:1/x?page=3>; rel="next""#;
        assert_eq!(next_page_url(header), Some("http://127.0.0.1:1/x?page=3"));
    }

    #[test]
    fn last_page_has_no_next() {
        let header = r#"<https://h/x?page=1>; rel="first", <https://h/x?page=4>; rel="prev""#;
        assert_eq!(next_page_url(header), None);
        assert_eq!(next_page_url(""), None);
    }

    #[test]
    fn accepts_unquoted_and_multi_valued_rel_and_commas_in_urls() {
        assert_eq!(
            next_page_url("<https://h/x?a=1,2&page=2>; rel=next"),
            Some("https://h/x?a=1,2&page=2")
        );
        assert_eq!(
            next_page_url(r#"<https://h/x?page=2>; title="p"; REL="last next""#),
            Some("https://h/x?page=2")
        );
        // "nextish" is not "next".
        assert_eq!(
            next_page_url(r#"<https://h/x?page=2>; rel="nextish""#),
            None
        );
    }

    #[test]
    fn malformed_headers_yield_nothing() {
        assert_eq!(next_page_url("https://h/x?page=2; rel=\"next\""), None);
        assert_eq!(next_page_url("<https://h/x?page=2; rel=\"next\""), None);
    }
}
