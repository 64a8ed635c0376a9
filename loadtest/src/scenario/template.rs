//! Request templates: `{{int:1..1000}}`, `{{uuid}}`, `{{choice:a|b|c}}`, `{{env:NAME}}`.
//!
//! `{{env:NAME}}` is read once, when the scenario is loaded (a token for the real service: the
//! file names the variable, never the secret); an unset variable is a file:line error then, not
//! an empty header on every request. Reports show the template, not the value.
//!
//! Templates are compiled once when the scenario is validated, so a typo is a file:line error
//! before the run instead of a literal `{{` sent to the server a million times.

use rand::Rng;

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Int(i64, i64),
    Uuid,
    Choice(Vec<String>),
}

/// A string with placeholders, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `src`; the error says which placeholder is wrong and what is accepted.
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("unclosed placeholder in {src:?}: add the closing `}}}}`")
            })?;
            parts.push(Self::placeholder(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    fn placeholder(inner: &str) -> Result<Part, String> {
        const HELP: &str = "use {{int:MIN..MAX}}, {{uuid}}, {{choice:a|b|c}} or {{env:NAME}}";
        let (kind, arg) = match inner.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (inner, None),
        };
        match (kind, arg) {
            ("uuid", None) => Ok(Part::Uuid),
            ("int", Some(range)) => {
                let (lo, hi) = range
                    .split_once("..")
                    .ok_or_else(|| format!("bad range {range:?} in {{{{{inner}}}}}: {HELP}"))?;
                let lo: i64 = lo
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad minimum in {{{{{inner}}}}}: {HELP}"))?;
                let hi: i64 = hi
                    .trim()
                    .trim_start_matches('=')
                    .parse()
                    .map_err(|_| format!("bad maximum in {{{{{inner}}}}}: {HELP}"))?;
                if lo > hi {
                    return Err(format!(
                        "empty range in {{{{{inner}}}}}: the minimum must not exceed the maximum"
                    ));
                }
                Ok(Part::Int(lo, hi))
            }
            ("choice", Some(list)) => {
                let items: Vec<String> = list.split('|').map(|s| s.trim().to_string()).collect();
                if items.iter().any(String::is_empty) {
                    return Err(format!("empty choice in {{{{{inner}}}}}: {HELP}"));
                }
                Ok(Part::Choice(items))
            }
            ("env", Some(name)) => env(name),
            _ => Err(format!("unknown placeholder {{{{{inner}}}}}: {HELP}")),
        }
    }

    /// True when the template has no placeholder (rendering is a copy).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Renders one instance with the given random source.
    pub fn render<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Int(lo, hi) => out.push_str(&rng.random_range(*lo..=*hi).to_string()),
                Part::Uuid => {
                    let bytes: [u8; 16] = rng.random();
                    out.push_str(
                        &uuid::Builder::from_random_bytes(bytes)
                            .into_uuid()
                            .to_string(),
                    );
                }
                Part::Choice(items) => out.push_str(&items[rng.random_range(0..items.len())]),
            }
        }
        out
    }
}

/// `{{env:NAME}}`: the variable's value now, as literal text.
fn env(name: &str) -> Result<Part, String> {
    let valid = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!(
            "bad variable name in {{{{env:{name}}}}}: letters, digits and _, not starting with a digit"
        ));
    }
    match std::env::var(name) {
        Ok(v) => Ok(Part::Lit(v)),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "{{{{env:{name}}}}}: the environment variable {name} is not set; export it before the run"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{{{{env:{name}}}}}: the environment variable {name} is not UTF-8"
        )),
    }
}

/// A JSON body whose string leaves are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A value with no template inside.
    Fixed(serde_json::Value),
    /// A string with placeholders; a whole-string `{{int:..}}` renders as a JSON number.
    Str(Template, bool),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles every string in `value` as a template.
    pub fn compile(value: &serde_json::Value) -> Result<JsonTemplate, String> {
        Ok(match value {
            serde_json::Value::String(s) => {
                let t = Template::compile(s)?;
                if t.is_literal() {
                    JsonTemplate::Fixed(value.clone())
                } else {
                    let numeric = t.parts.len() == 1 && matches!(t.parts[0], Part::Int(..));
                    JsonTemplate::Str(t, numeric)
                }
            }
            serde_json::Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::compile)
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::compile(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Fixed(other.clone()),
        })
    }

    /// Renders one JSON value.
    pub fn render<R: Rng + ?Sized>(&self, rng: &mut R) -> serde_json::Value {
        match self {
            JsonTemplate::Fixed(v) => v.clone(),
            JsonTemplate::Str(t, numeric) => {
                let s = t.render(rng);
                if *numeric {
                    if let Ok(n) = s.parse::<i64>() {
                        return serde_json::Value::from(n);
                    }
                }
                serde_json::Value::String(s)
            }
            JsonTemplate::Array(items) => {
                serde_json::Value::Array(items.iter().map(|i| i.render(rng)).collect())
            }
            JsonTemplate::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(rng)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn renders_every_placeholder_kind() {
        let t = Template::compile("/items/{{int:5..5}}/{{choice:a}}?id={{uuid}}").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = t.render(&mut rng);
        assert!(s.starts_with("/items/5/a?id="), "{s}");
        assert_eq!(s.len(), "/items/5/a?id=".len() + 36);
    }

    #[test]
    fn env_is_read_once_at_load_and_an_unset_one_is_refused() {
        // PATH is set wherever tests run; nothing here changes the environment.
        let path = std::env::var("PATH").unwrap();
        let t = Template::compile("Bearer {{env:PATH}}").unwrap();
        assert!(t.is_literal());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(t.render(&mut rng), format!("Bearer {path}"));
        let err = Template::compile("{{env:LOADTEST_SURELY_UNSET_4711}}").unwrap_err();
        assert!(
            err.contains("LOADTEST_SURELY_UNSET_4711 is not set"),
            "{err}"
        );
        for bad in ["{{env:}}", "{{env:9X}}", "{{env:A-B}}"] {
            assert!(Template::compile(bad)
                .unwrap_err()
                .contains("bad variable name"));
        }
    }

    #[test]
    fn rejects_bad_placeholders_with_help() {
        for bad in [
            "{{int:9..1}}",
            "{{nope}}",
            "{{int:1-2}}",
            "/x/{{uuid",
            "{{choice:a||b}}",
        ] {
            let err = Template::compile(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(Template::compile("{{nope}}")
            .unwrap_err()
            .contains("{{uuid}}"));
    }

    #[test]
    fn json_int_placeholder_becomes_a_number() {
        let body = serde_json::json!({"n": "{{int:7..7}}", "s": "x{{int:1..1}}", "k": [1, "{{choice:z}}"]});
        let t = JsonTemplate::compile(&body).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            t.render(&mut rng),
            serde_json::json!({"n": 7, "s": "x1", "k": [1, "z"]})
        );
    }
}
