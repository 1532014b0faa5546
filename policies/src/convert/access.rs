//! Converting a route's access rule and CORS rules, against the roles and
//! identity sources the policy declares.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::Spanned;

use crate::convert::context::Converter;
use crate::convert::identity::HTTP_METHODS;
use crate::convert::route::extension_method_problem;
use crate::identity::*;
use crate::model::{Cors, CorsOrigins};
use crate::raw::*;

impl Converter<'_> {
    /// A route's access rule, checked against the roles and the identity
    /// sources that exist.
    pub(crate) fn access(
        &mut self,
        r: &RawRoute,
        roles: &Roles,
        identities: &Identities,
    ) -> Access {
        let public = r.public.as_ref().is_some_and(|p| *p.get_ref());
        let names_requirements =
            !r.roles.is_empty() || !r.permissions.is_empty() || !r.methods.is_empty();
        if public {
            if names_requirements || !r.accept.is_empty() {
                self.problems.add_hint(
                    r.public.as_ref().map(|p| p.span()),
                    "a public route cannot also require roles, permissions or identities",
                    "remove `public = true` or the requirements",
                );
            }
            return Access::Public;
        }
        if !names_requirements {
            self.problems.add_hint(
                Some(r.name.span()),
                format!("route `{}` is neither public nor names what it requires", r.name.get_ref()),
                "add `public = true`, or `roles = [...]` / `permissions = [...]`; routes deny by default",
            );
        }
        let default = self.requirement(&r.roles, &r.permissions, roles);
        let per_method = self.per_method(r, roles);
        let accept = self.accepted_kinds(r, identities);
        if accept.is_empty() && names_requirements {
            self.problems.add_hint(
                Some(r.name.span()),
                format!(
                    "route `{}` requires roles but no identity source could provide them",
                    r.name.get_ref()
                ),
                "declare [[oidc]], [[jwt]], [[api_key]] or [[basic_user]]",
            );
        }
        Access::Restricted {
            default,
            per_method,
            accept,
        }
    }

    /// `[route.methods.X]`: a requirement per method, for methods that may
    /// have one of their own.
    fn per_method(&mut self, r: &RawRoute, roles: &Roles) -> BTreeMap<String, Requirement> {
        let mut per_method = BTreeMap::new();
        for (method, req) in &r.methods {
            let name = method.get_ref().as_str();
            if name == "HEAD" {
                self.problems.add_hint(
                    Some(method.span()),
                    "HEAD follows GET's rule",
                    "write the rule under [route.methods.GET]; it covers HEAD too",
                );
            } else if !HTTP_METHODS.contains(&name) {
                if let Some((message, hint)) = extension_method_problem(name) {
                    self.problems.add_hint(Some(method.span()), message, hint);
                }
            }
            per_method.insert(
                method.get_ref().clone(),
                self.requirement(&req.roles, &req.permissions, roles),
            );
        }
        per_method
    }

    /// The identity kinds a route accepts: its `accept` list, each known
    /// and configured, or every configured kind when it names none.
    fn accepted_kinds(&mut self, r: &RawRoute, identities: &Identities) -> BTreeSet<IdentityKind> {
        let configured = identities.configured_kinds();
        if r.accept.is_empty() {
            configured.clone()
        } else {
            r.accept
                .iter()
                .filter_map(|k| {
                    let kind = IdentityKind::ALL
                        .into_iter()
                        .find(|kind| kind.as_str() == k.get_ref());
                    match kind {
                        None => self.problems.add_hint(
                            Some(k.span()),
                            format!("unknown identity kind `{}`", k.get_ref()),
                            "use oidc, jwt, api_key or basic",
                        ),
                        Some(kind) if !configured.contains(&kind) => self.problems.add_hint(
                            Some(k.span()),
                            format!(
                                "route accepts `{}` but no such identity source is configured",
                                k.get_ref()
                            ),
                            "declare it ([[oidc]], [[jwt]], [[api_key]] or [[basic_user]])",
                        ),
                        Some(_) => {}
                    }
                    kind
                })
                .collect()
        }
    }

    fn requirement(
        &mut self,
        raw_roles: &[Spanned<String>],
        raw_permissions: &[Spanned<String>],
        roles: &Roles,
    ) -> Requirement {
        let any_role = self.role_refs(roles, raw_roles);
        let mut all_permissions = BTreeSet::new();
        for p in raw_permissions {
            let granted = roles
                .0
                .values()
                .any(|perms| perms.contains("*") || perms.contains(p.get_ref()));
            if !granted {
                self.problems.add_hint(
                    Some(p.span()),
                    format!("no role grants permission `{}`", p.get_ref()),
                    "add it to a role under [roles], or the route can never be reached",
                );
            }
            all_permissions.insert(p.get_ref().clone());
        }
        Requirement {
            any_role,
            all_permissions,
        }
    }

    pub(crate) fn cors(&mut self, raw: &Option<Spanned<RawCors>>) -> Option<Cors> {
        let raw = raw.as_ref()?;
        let span = raw.span();
        let c = raw.get_ref();
        let wildcard = c.allow_origins.iter().any(|o| o.get_ref() == "*");
        let origins = if wildcard {
            if c.allow_origins.len() > 1 {
                self.problems
                    .add(Some(span.clone()), "`*` stands alone in allow_origins");
            }
            if c.allow_credentials {
                // The CORS spec forbids it; we make it unrepresentable.
                self.problems.add_hint(
                    Some(span.clone()),
                    "allow_origins = [\"*\"] cannot be combined with allow_credentials",
                    "list the origins that may send credentials",
                );
                return None;
            }
            CorsOrigins::Any
        } else {
            let mut list = Vec::new();
            for o in &c.allow_origins {
                match url::Url::parse(o.get_ref()) {
                    Ok(u)
                        if u.path() == "/"
                            && u.query().is_none()
                            && matches!(u.scheme(), "https" | "http") =>
                    {
                        list.push(u.origin().ascii_serialization());
                    }
                    _ => self.problems.add_hint(
                        Some(o.span()),
                        format!("`{}` is not an origin", o.get_ref()),
                        "write scheme://host[:port], with no path",
                    ),
                }
            }
            CorsOrigins::List {
                origins: list,
                allow_credentials: c.allow_credentials,
            }
        };
        let mut methods = Vec::new();
        for m in &c.allow_methods {
            if HTTP_METHODS.contains(&m.get_ref().as_str()) {
                methods.push(m.get_ref().clone());
            } else {
                self.problems.add(
                    Some(m.span()),
                    format!("`{}` is not an HTTP method", m.get_ref()),
                );
            }
        }
        if methods.is_empty() {
            methods = vec!["GET".into(), "HEAD".into(), "POST".into()];
        }
        let headers = c
            .allow_headers
            .iter()
            .map(|h| h.get_ref().to_ascii_lowercase())
            .collect();
        Some(Cors {
            origins,
            methods,
            headers,
            max_age: self.duration(&c.max_age, Duration::from_secs(600)),
        })
    }
}
