//! What the metadata server answers under `/computeMetadata/v1/`: a tree of directories and
//! values, as Google's server lays it out. A value is text; a directory lists its entries (a
//! sub-directory with a trailing `/`), or with `?recursive=true` is one JSON object with
//! camelCase keys (what google-auth reads a service account's email and scopes from). The
//! token and identity endpoints are made on each request.

use std::collections::HashMap;

use serde_json::Value;

use super::tokens::{self, Signer};
use crate::spec::ProjectSettings;

/// Cloud Run's instances carry the `cloud-platform` scope.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The identity of this run's instances, resolved from the config's (or the default) values.
#[derive(Debug, Clone)]
pub struct Identity {
    pub project_id: String,
    pub project_number: String,
    pub region: String,
    pub service_account: String,
    /// The service account's unique id: the `sub` of its ID tokens.
    pub account_id: String,
    /// One per run: every instance of the run reads the same (see the module docs of `metadata`).
    pub instance_id: String,
}

impl Identity {
    pub fn new(p: &ProjectSettings) -> Identity {
        let service_account = p.service_account();
        Identity {
            project_id: p.id().to_string(),
            project_number: p.number().to_string(),
            region: p.region().to_string(),
            account_id: tokens::unique_id(&service_account),
            service_account,
            instance_id: tokens::random_hex(48),
        }
    }
}

/// An entry of the tree.
enum Node {
    Value(Value),
    Dir(Vec<(String, Node)>),
    /// `.../token`: a fresh access token.
    Token,
    /// `.../identity?audience=AUD`: a fresh ID token.
    IdToken,
}

/// What a request gets, before it becomes a response.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Text(String),
    Json(Value),
    NotFound,
    BadRequest(String),
    Failed(String),
}

fn dir(entries: Vec<(&str, Node)>) -> Node {
    Node::Dir(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn text(v: &str) -> Node {
    Node::Value(Value::String(v.to_string()))
}

/// The tree for `id`. A service account is found under `default` and under its email.
fn tree(id: &Identity) -> Node {
    let account = || {
        dir(vec![
            ("aliases", Node::Value(serde_json::json!(["default"]))),
            ("email", text(&id.service_account)),
            ("identity", Node::IdToken),
            ("scopes", Node::Value(serde_json::json!([SCOPE]))),
            ("token", Node::Token),
        ])
    };
    let number: Value = id
        .project_number
        .parse::<u64>()
        .map_or_else(|_| Value::String(id.project_number.clone()), Value::from);
    dir(vec![
        (
            "instance",
            dir(vec![
                ("id", text(&id.instance_id)),
                (
                    "region",
                    text(&format!(
                        "projects/{}/regions/{}",
                        id.project_number, id.region
                    )),
                ),
                (
                    "service-accounts",
                    Node::Dir(vec![
                        ("default".to_string(), account()),
                        (id.service_account.clone(), account()),
                    ]),
                ),
                (
                    "zone",
                    text(&format!(
                        "projects/{}/zones/{}-1",
                        id.project_number, id.region
                    )),
                ),
            ]),
        ),
        (
            "project",
            dir(vec![
                ("numeric-project-id", Node::Value(number)),
                ("project-id", text(&id.project_id)),
            ]),
        ),
    ])
}

/// The answer to `GET /computeMetadata/v1/{path}?{query}`.
pub fn answer(
    id: &Identity,
    signer: &Signer,
    path: &str,
    query: &HashMap<String, String>,
) -> Reply {
    let root = tree(id);
    let mut node = &root;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let Node::Dir(entries) = node else {
            return Reply::NotFound;
        };
        match entries.iter().find(|(k, _)| k == seg) {
            Some((_, child)) => node = child,
            None => return Reply::NotFound,
        }
    }
    let recursive = query.get("recursive").is_some_and(|v| v == "true");
    match node {
        Node::Value(v) => Reply::Text(value_text(v)),
        Node::Dir(entries) if recursive => Reply::Json(as_json(entries)),
        Node::Dir(entries) => Reply::Text(listing(entries)),
        Node::Token => Reply::Json(tokens::access_token()),
        Node::IdToken => match query.get("audience").filter(|a| !a.is_empty()) {
            None => Reply::BadRequest("non-empty audience parameter required".into()),
            Some(aud) => match signer.id_token(aud, &id.service_account, &id.account_id) {
                Ok(t) => Reply::Text(t),
                Err(e) => Reply::Failed(e.to_string()),
            },
        },
    }
}

/// A value as text: a string as written, a list one item per line.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(|i| value_text(i) + "\n").collect(),
        other => other.to_string(),
    }
}

/// A directory's entries, one a line, sub-directories with a trailing `/`.
fn listing(entries: &[(String, Node)]) -> String {
    let mut names: Vec<String> = entries
        .iter()
        .map(|(k, n)| match n {
            Node::Dir(_) => format!("{k}/\n"),
            _ => format!("{k}\n"),
        })
        .collect();
    names.sort();
    names.concat()
}

/// A directory as one JSON object, keys in camelCase as Google's recursive answers have them;
/// tokens are not part of it.
fn as_json(entries: &[(String, Node)]) -> Value {
    let mut out = serde_json::Map::new();
    for (k, n) in entries {
        let v = match n {
            Node::Value(v) => v.clone(),
            Node::Dir(e) => as_json(e),
            Node::Token | Node::IdToken => continue,
        };
        out.insert(camel(k), v);
    }
    Value::Object(out)
}

/// `numeric-project-id` → `numericProjectId`; an email key is left as it is.
fn camel(k: &str) -> String {
    if k.contains('@') {
        return k.to_string();
    }
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &[(&str, &str)]) -> Reply {
        let id = Identity::new(&ProjectSettings::default());
        let signer = Signer::generate().unwrap();
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        answer(&id, &signer, path, &q)
    }

    #[test]
    fn values_listings_and_recursive_json() {
        assert_eq!(
            get("project/project-id", &[]),
            Reply::Text("emu-local".into())
        );
        assert_eq!(
            get("project/numeric-project-id", &[]),
            Reply::Text("123456789012".into())
        );
        assert_eq!(
            get("instance/region", &[]),
            Reply::Text("projects/123456789012/regions/us-central1".into())
        );
        assert_eq!(get("", &[]), Reply::Text("instance/\nproject/\n".into()));
        assert_eq!(
            get("instance/service-accounts/default/", &[]),
            Reply::Text("aliases\nemail\nidentity\nscopes\ntoken\n".into())
        );
        let Reply::Json(sa) = get(
            "instance/service-accounts/default/",
            &[("recursive", "true")],
        ) else {
            panic!("not JSON")
        };
        assert_eq!(
            sa["email"],
            "123456789012-compute@developer.gserviceaccount.com"
        );
        assert_eq!(sa["aliases"][0], "default");
        assert!(sa.get("token").is_none());
        let Reply::Json(p) = get("project", &[("recursive", "true")]) else {
            panic!("not JSON")
        };
        assert_eq!(p["numericProjectId"], 123456789012u64);
        assert_eq!(get("project/nope", &[]), Reply::NotFound);
        assert_eq!(get("project/project-id/more", &[]), Reply::NotFound);
        assert!(matches!(
            get("instance/service-accounts/default/identity", &[]),
            Reply::BadRequest(_)
        ));
    }
}
