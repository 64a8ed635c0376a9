//! The Google Cloud identity a run pretends to have: project id and number, region, and the
//! service account instances run as. The metadata server (`crate::metadata`) answers with it.
//!
//! It is written in emu.toml's `[project]` or in a service YAML (`metadata.namespace`, the
//! `cloud.googleapis.com/location` label, `serviceAccountName`, `emu.dev/project-id`); what is
//! not written gets a local default. Each value is checked where it is read, so a bad one is a
//! file:line error before anything starts.

use std::path::{Path, PathBuf};

use super::SpecError;

/// The project id when none is written.
pub const DEFAULT_PROJECT_ID: &str = "emu-local";
/// The project number when none is written: twelve digits, as Google's are.
pub const DEFAULT_PROJECT_NUMBER: &str = "123456789012";
/// The region when none is written (Cloud Run's first region).
pub const DEFAULT_REGION: &str = "us-central1";

/// One value and where it was written (for the warning when two files disagree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// The identity as written; [`ProjectSettings::id`] and the others give the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectSettings {
    pub id: Option<Written>,
    pub number: Option<Written>,
    pub region: Option<Written>,
    pub service_account: Option<Written>,
}

impl ProjectSettings {
    pub fn id(&self) -> &str {
        self.id.as_ref().map_or(DEFAULT_PROJECT_ID, |w| &w.value)
    }
    pub fn number(&self) -> &str {
        self.number
            .as_ref()
            .map_or(DEFAULT_PROJECT_NUMBER, |w| &w.value)
    }
    pub fn region(&self) -> &str {
        self.region.as_ref().map_or(DEFAULT_REGION, |w| &w.value)
    }
    /// The service account, else the project's default compute one, as Cloud Run uses.
    pub fn service_account(&self) -> String {
        match &self.service_account {
            Some(w) => w.value.clone(),
            None => format!("{}-compute@developer.gserviceaccount.com", self.number()),
        }
    }

    /// Checks `value` for `field` and records it, or a file:line error.
    pub fn set(
        &mut self,
        field: Field,
        value: &str,
        file: &Path,
        line: usize,
    ) -> Result<(), SpecError> {
        let check = match field {
            Field::Id => check_id,
            Field::Number => check_number,
            Field::Region => check_region,
            Field::ServiceAccount => check_service_account,
        };
        check(value).map_err(|m| SpecError::new(file, Some(line), m))?;
        *self.slot(field) = Some(Written {
            value: value.to_string(),
            file: file.to_path_buf(),
            line,
        });
        Ok(())
    }

    fn slot(&mut self, field: Field) -> &mut Option<Written> {
        match field {
            Field::Id => &mut self.id,
            Field::Number => &mut self.number,
            Field::Region => &mut self.region,
            Field::ServiceAccount => &mut self.service_account,
        }
    }

    /// Takes what `other` (a later `-f` file) writes that this one does not. One metadata server
    /// serves a whole run, so when two files disagree the first wins, with a warning.
    pub fn merge(&mut self, mut other: ProjectSettings, warnings: &mut Vec<String>) {
        for field in [
            Field::Id,
            Field::Number,
            Field::Region,
            Field::ServiceAccount,
        ] {
            let Some(new) = other.slot(field).take() else {
                continue;
            };
            match self.slot(field) {
                Some(kept) if kept.value != new.value => warnings.push(format!(
                    "{}:{}: {} {:?} differs from {:?} ({}:{}); emu runs one metadata server for the whole run and answers with the first",
                    new.file.display(),
                    new.line,
                    field.name(),
                    new.value,
                    kept.value,
                    kept.file.display(),
                    kept.line
                )),
                Some(_) => {}
                empty @ None => *empty = Some(new),
            }
        }
    }
}

/// Which value of the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Number,
    Region,
    ServiceAccount,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Id => "project id",
            Field::Number => "project number",
            Field::Region => "region",
            Field::ServiceAccount => "service account",
        }
    }
}

/// Google's rule for project ids: 6 to 30 lowercase letters, digits or hyphens, starting with a
/// letter and not ending with a hyphen.
fn check_id(v: &str) -> Result<(), String> {
    let ok = (6..=30).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(()).ok_or_else(|| {
        format!("project id {v:?} is not a Google Cloud project id: 6 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (like \"my-project-123\")")
    })
}

fn check_number(v: &str) -> Result<(), String> {
    let ok = (1..=19).contains(&v.len()) && v.chars().all(|c| c.is_ascii_digit());
    ok.then_some(()).ok_or_else(|| {
        format!("project number {v:?} is not a project number: digits only, like \"123456789012\"")
    })
}

/// A region name as Google writes them: `us-central1`, `europe-west4`, `northamerica-south1`.
fn check_region(v: &str) -> Result<(), String> {
    let ok = v.split_once('-').is_some_and(|(area, rest)| {
        let name = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        !area.is_empty()
            && area.chars().all(|c| c.is_ascii_lowercase())
            && !name.is_empty()
            && name.len() < rest.len()
            && name.chars().all(|c| c.is_ascii_lowercase())
    });
    ok.then_some(()).ok_or_else(|| {
        format!("region {v:?} is not a Google Cloud region: write it like \"us-central1\" or \"europe-west4\"")
    })
}

fn check_service_account(v: &str) -> Result<(), String> {
    let ok = v.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && v.matches('@').count() == 1
        && !v.chars().any(char::is_whitespace);
    ok.then_some(()).ok_or_else(|| {
        format!("service account {v:?} is not a service account's email: write it like \"api@my-project.iam.gserviceaccount.com\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_google_writes_them() {
        for ok in ["emu-local", "my-project-123", "abcdef"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["short", "My-Project", "1project", "project-", "a_b_c_d_e"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_number("123456789012").is_ok());
        assert!(check_number("12a").is_err() && check_number("").is_err());
        for ok in ["us-central1", "europe-west4", "northamerica-south1"] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for bad in ["us", "us-central", "US-central1", "central1", "us-1"] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
        assert!(check_service_account("api@p.iam.gserviceaccount.com").is_ok());
        for bad in ["api", "a@b", "a@@b.c", "a b@c.d", "@b.c"] {
            assert!(check_service_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_the_first_file_win() {
        let mut a = ProjectSettings::default();
        assert_eq!(a.id(), "emu-local");
        assert_eq!(
            a.service_account(),
            "123456789012-compute@developer.gserviceaccount.com"
        );
        a.set(Field::Region, "europe-west1", Path::new("a.yaml"), 3)
            .unwrap();
        let mut b = ProjectSettings::default();
        b.set(Field::Region, "us-east1", Path::new("b.yaml"), 4)
            .unwrap();
        b.set(Field::Number, "42", Path::new("b.yaml"), 5).unwrap();
        let mut warnings = Vec::new();
        a.merge(b, &mut warnings);
        assert_eq!(a.region(), "europe-west1");
        assert_eq!(a.number(), "42");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("b.yaml:4: region"), "{warnings:?}");
        let e = a
            .set(Field::Id, "Bad", Path::new("emu.toml"), 7)
            .unwrap_err();
        assert_eq!(e.line, Some(7));
    }

    const SERVICE: &str = "[[service]]\nname = \"api\"\ncommand = [\"x\"]\n";

    #[test]
    fn emu_toml_project_section() {
        let src = format!("{SERVICE}[project]\nid = \"shop-prod\"\nnumber = 42\nregion = \"europe-west4\"\nservice_account = \"api@shop-prod.iam.gserviceaccount.com\"\n");
        let cfg = super::super::parse_toml(&src, Path::new("emu.toml")).unwrap();
        assert_eq!(cfg.project.id(), "shop-prod");
        assert_eq!(cfg.project.number(), "42");
        assert_eq!(cfg.project.region(), "europe-west4");
        assert_eq!(
            cfg.project.service_account(),
            "api@shop-prod.iam.gserviceaccount.com"
        );
        let bad = format!("{SERVICE}[project]\nid = \"shop-prod\"\nregion = \"Europe\"\n");
        let e = super::super::parse_toml(&bad, Path::new("emu.toml")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("region \"Europe\""), "{e}");
        let typo = format!("{SERVICE}[project]\nproject_id = \"x\"\n");
        let e = super::super::parse_toml(&typo, Path::new("emu.toml")).unwrap_err();
        assert!(e.message.contains("project_id"), "{e}");
    }

    #[test]
    fn yaml_namespace_labels_and_annotation() {
        let yaml = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop-prod\n  annotations:\n    emu.dev/project-id: shop-staging\n  labels:\n    cloud.googleapis.com/location: asia-east1\nspec:\n  template:\n    spec:\n      serviceAccountName: not-an-email\n      containers:\n      - image: x\n";
        let e = super::super::parse_yaml(yaml, Path::new("s.yaml"), &[]).unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        let yaml = yaml.replace("not-an-email", "api@shop.iam.gserviceaccount.com");
        let cfg = super::super::parse_yaml(&yaml, Path::new("s.yaml"), &[]).unwrap();
        // The annotation names the id; the namespace is then not read as one.
        assert_eq!(cfg.project.id(), "shop-staging");
        assert_eq!(cfg.project.region(), "asia-east1");
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }
}
