//! Policy templates: TOML with `{name}` placeholders that a harness fills
//! in with this run's ports, certificate paths and directories.

use std::path::Path;

/// The values of a template's placeholders, replaced in the order they
/// were set: a value may itself contain placeholders set after it.
#[derive(Clone, Debug, Default)]
pub struct Placeholders(Vec<(String, String)>);

impl Placeholders {
    pub fn new() -> Placeholders {
        Placeholders::default()
    }

    /// Sets `{name}` to `value`.
    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Placeholders {
        self.0.push((format!("{{{name}}}"), value.to_string()));
        self
    }

    /// The value `{name}` is set to.
    pub fn get(&self, name: &str) -> Option<&str> {
        let key = format!("{{{name}}}");
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `template` with `sections` (pairs of placeholder name and text, such
    /// as `("extra", "[session]…")`) put in first, so the placeholders
    /// inside them are filled in too, then every value set here.
    pub fn render(&self, template: &str, sections: &[(&str, &str)]) -> String {
        let mut text = template.to_owned();
        for (name, section) in sections {
            text = text.replace(&format!("{{{name}}}"), section);
        }
        for (key, value) in &self.0 {
            text = text.replace(key, value);
        }
        text
    }

    /// Renders into `path`, written in place.
    pub fn write(&self, path: &Path, template: &str, sections: &[(&str, &str)]) {
        std::fs::write(path, self.render(template, sections))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Renders into `path` through a temporary file and a rename, so a
    /// watcher never reads half a policy.
    pub fn replace(&self, path: &Path, template: &str, sections: &[(&str, &str)]) {
        let tmp = path.with_extension("tmp");
        self.write(&tmp, template, sections);
        std::fs::rename(&tmp, path)
            .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::Placeholders;

    #[test]
    fn sections_go_in_first_so_their_placeholders_are_filled_too() {
        let mut vars = Placeholders::new();
        vars.set("port", 8443).set("dir", "/tmp/x");
        let text = vars.render(
            "listen = {port}\n{extra}",
            &[("extra", "path = \"{dir}/a\"")],
        );
        assert_eq!(text, "listen = 8443\npath = \"/tmp/x/a\"");
        assert_eq!(vars.get("port"), Some("8443"));
        assert_eq!(vars.get("nope"), None);
    }

    #[test]
    fn values_are_replaced_in_the_order_they_were_set() {
        let mut vars = Placeholders::new();
        vars.set("outer", "[{inner}]").set("inner", "x");
        assert_eq!(vars.render("{outer}", &[]), "[x]");
    }
}
