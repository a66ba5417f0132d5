//! The outbound proxy of every GitHub call: the REST API, the App token
//! exchange, delivery logs, runner versions and the Actions service of scale
//! sets all get their HTTP client from `http_client_builder`, which applies
//! this. The proxy comes from the process environment with curl's rules, read
//! here rather than by reqwest, which drops a URL it cannot parse without a
//! word and goes direct: a malformed proxy URL stops the operator at startup
//! instead. A proxy URL's credentials never reach a log line or an error.

use std::fmt;

use url::Url;

/// Each setting's variables, the first one set (and not empty) winning.
const HTTPS_PROXY: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_PROXY: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_PROXY: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const NO_PROXY: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Where GitHub calls go: through the proxy for their URL's scheme, unless
/// their host is listed in `NO_PROXY`. No `Debug`: the URLs may hold
/// credentials; `Display` hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutboundProxy {
    /// For `https://` URLs: `HTTPS_PROXY`, else `ALL_PROXY`.
    https: Option<Url>,
    /// For `http://` URLs: `HTTP_PROXY`, else `ALL_PROXY`.
    http: Option<Url>,
    /// Hosts reached directly: comma-separated names (each also covering its
    /// subdomains, a leading dot optional), IP addresses, CIDRs, or `*`.
    no_proxy: String,
}

/// A proxy variable the operator cannot use; names the variable, never its value.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is not a usable proxy URL: {reason}")]
pub struct ProxyError {
    variable: &'static str,
    reason: String,
}

impl OutboundProxy {
    /// The proxy the process environment asks for.
    pub fn from_env() -> Result<Self, ProxyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The proxy the variables `lookup` returns ask for.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                lookup(name)
                    .filter(|value| !value.trim().is_empty())
                    .map(|value| (name, value))
            })
        };
        let proxy = |names| {
            first(names)
                .map(|(name, value)| proxy_url(name, &value))
                .transpose()
        };
        let all = proxy(ALL_PROXY)?;
        Ok(OutboundProxy {
            https: proxy(HTTPS_PROXY)?.or_else(|| all.clone()),
            http: proxy(HTTP_PROXY)?.or(all),
            no_proxy: first(NO_PROXY).map(|(_, value)| value).unwrap_or_default(),
        })
    }

    /// Whether any call may go through a proxy.
    pub fn is_set(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }

    /// `builder` sending calls through this proxy, and only through it.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::Result<reqwest::ClientBuilder> {
        // Off first: reqwest would otherwise read the environment itself.
        let mut builder = builder.no_proxy();
        let exceptions = || reqwest::NoProxy::from_string(&self.no_proxy);
        if let Some(url) = &self.https {
            builder = builder.proxy(reqwest::Proxy::https(url.as_str())?.no_proxy(exceptions()));
        }
        if let Some(url) = &self.http {
            builder = builder.proxy(reqwest::Proxy::http(url.as_str())?.no_proxy(exceptions()));
        }
        Ok(builder)
    }
}

impl fmt::Display for OutboundProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<Url>| url.as_ref().map_or("direct".to_owned(), redacted);
        write!(
            f,
            "https:// via {}, http:// via {}, direct for [{}]",
            shown(&self.https),
            shown(&self.http),
            self.no_proxy
        )
    }
}

/// A proxy URL as it may be shown: its credentials replaced by `***`.
fn redacted(url: &Url) -> String {
    let credentials = !url.username().is_empty() || url.password().is_some();
    format!(
        "{}://{}{}:{}",
        url.scheme(),
        if credentials { "***@" } else { "" },
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// The value of `variable` as a proxy URL; `host:port` alone means
/// `http://host:port`, as for curl.
fn proxy_url(variable: &'static str, value: &str) -> Result<Url, ProxyError> {
    let refused = |reason: String| ProxyError { variable, reason };
    let value = value.trim();
    let url = match value.contains("://") {
        true => Url::parse(value),
        false => Url::parse(&format!("http://{value}")),
    }
    // url's messages ("invalid port number", …) never quote the input.
    .map_err(|error| refused(error.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(refused(format!(
                "the scheme {other}:// is not supported; use http:// or https://"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refused("it names no host".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn proxy(vars: &[(&str, &str)]) -> Result<OutboundProxy, ProxyError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OutboundProxy::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn upper_case_wins_and_all_proxy_is_the_fallback_of_both_schemes() {
        let set = proxy(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("http_proxy", "http://plain:8080"),
            ("ALL_PROXY", "http://all:1"),
            ("no_proxy", ".svc,10.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(
            set.to_string(),
            "https:// via http://upper:3128, http:// via http://plain:8080, direct for [.svc,10.0.0.0/8]"
        );
        let all = proxy(&[("all_proxy", "proxy.corp:3128"), ("HTTPS_PROXY", " ")]).unwrap();
        assert_eq!(
            all.to_string(),
            "https:// via http://proxy.corp:3128, http:// via http://proxy.corp:3128, direct for []",
            "an empty variable is unset; no scheme means http://"
        );
        assert!(!proxy(&[("NO_PROXY", "*")]).unwrap().is_set());
    }

    #[test]
    fn credentials_are_never_shown() {
        let set = proxy(&[("HTTPS_PROXY", "https://user:pa55word@proxy.corp")]).unwrap();
        let shown = set.to_string();
        assert!(
            shown.starts_with("https:// via https://***@proxy.corp:443"),
            "{shown}"
        );
        assert!(
            !shown.contains("pa55word") && !shown.contains("user"),
            "{shown}"
        );
        for bad in [
            "http://user:pa55word@proxy corp:3128",
            "http://user:pa55word@proxy.corp:99999",
            "socks5://user:pa55word@proxy.corp:1080",
            "http://user:pa55word@:3128",
        ] {
            let error = proxy(&[("https_proxy", bad)]).err().unwrap().to_string();
            assert!(
                error.starts_with("https_proxy is not a usable proxy URL: "),
                "{error}"
            );
            assert!(
                !error.contains("pa55word") && !error.contains("user"),
                "{error}"
            );
        }
    }

    /// What a client built with `vars` (`PROXY` standing for a listener's
    /// URL) sends to that proxy for `url`: the first request head the proxy
    /// receives, which then hangs up; `None` when the call never reached it.
    async fn head_sent_to_proxy(vars: &[(&str, &str)], url: &str) -> Option<String> {
        use futures::FutureExt;
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://u:pa55@{}", listener.local_addr().unwrap());
        let vars: Vec<(&str, &str)> = vars
            .iter()
            .map(|(k, v)| (*k, if *v == "PROXY" { address.as_str() } else { *v }))
            .collect();
        let client = proxy(&vars)
            .unwrap()
            .apply(reqwest::Client::builder())
            .unwrap()
            .build()
            .unwrap();
        let url = url.to_owned();
        let call = tokio::spawn(async move { client.get(url).send().await.is_ok() });
        tokio::select! {
            accepted = listener.accept() => {
                let (mut socket, _) = accepted.unwrap();
                let mut head = vec![0; 4096];
                let read = socket.read(&mut head).await.unwrap();
                Some(String::from_utf8_lossy(&head[..read]).into_owned())
            }
            answered = call => {
                assert!(!answered.unwrap(), "nothing answers {vars:?}");
                // A connection to the proxy would have been made before the call failed.
                listener.accept().now_or_never().map(|_| "connected".to_owned())
            }
        }
    }

    #[tokio::test]
    async fn https_urls_are_tunnelled_through_https_proxy_unless_listed_in_no_proxy() {
        let head = head_sent_to_proxy(&[("HTTPS_PROXY", "PROXY")], "https://github.proxy.test/x")
            .await
            .expect("the proxy was asked");
        assert!(
            head.starts_with("CONNECT github.proxy.test:443 HTTP/1.1\r\n"),
            "{head}"
        );
        // u:pa55
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic dtpwytu1\r\n"),
            "{head}"
        );
        let head = head_sent_to_proxy(
            &[
                ("HTTPS_PROXY", "PROXY"),
                ("NO_PROXY", "other.test, .proxy.test"),
            ],
            "https://127.0.0.1:1/x",
        )
        .await;
        assert!(head.is_some(), "a host not listed goes through the proxy");
        let head = head_sent_to_proxy(
            &[
                ("HTTPS_PROXY", "PROXY"),
                ("NO_PROXY", "other.test, .proxy.test"),
            ],
            "https://api.github.proxy.test:1/x",
        )
        .await;
        assert_eq!(head, None, "a listed domain's subdomain goes direct");
    }
}
