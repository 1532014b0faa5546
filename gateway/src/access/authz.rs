//! Authorization: may this caller use this route with this method?
//!
//! Pure and deny-by-default. Only [`decide`] builds a [`Permit`], and the
//! upstream stage needs one. Every decision names the rule that made it
//! and, when it denies, a stable reason shared by logs and metrics.

use gatehouse_policy::{Access, Requirement, Roles, Route};

use crate::identity::Principal;

/// Proof that a request was authorized, and by which rule.
#[derive(Debug, Clone)]
// The private field keeps construction inside this module, which
// #[non_exhaustive] would not (it only binds other crates).
#[allow(clippy::manual_non_exhaustive)]
pub struct Permit {
    pub rule: String,
    _decided: (),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credential: 401, or a login redirect for browsers.
    Unauthenticated { rule: String },
    /// A verified caller without what the rule requires: 403.
    Forbidden { rule: String, reason: Forbidden },
}

/// Why a verified caller may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    MissingRole,
    MissingPermission,
    IdentityKindNotAccepted,
    /// A rule with nothing in it; the policy crate refuses such rules.
    EmptyRequirement,
}

impl Forbidden {
    pub const ALL: [Forbidden; 4] = [
        Forbidden::MissingRole,
        Forbidden::MissingPermission,
        Forbidden::IdentityKindNotAccepted,
        Forbidden::EmptyRequirement,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Forbidden::MissingRole => "missing-role",
            Forbidden::MissingPermission => "missing-permission",
            Forbidden::IdentityKindNotAccepted => "identity-kind-not-accepted",
            Forbidden::EmptyRequirement => "empty-requirement",
        }
    }
}

impl Denial {
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Unauthenticated { .. } => "unauthenticated",
            Denial::Forbidden { reason, .. } => reason.reason(),
        }
    }

    pub fn rule(&self) -> &str {
        match self {
            Denial::Unauthenticated { rule } | Denial::Forbidden { rule, .. } => rule,
        }
    }
}

/// The decision for `principal` (or nobody) calling `route` with `method`
/// (the method whose rule applies: HEAD answers to GET's, see
/// `method::rule_method`).
pub fn decide(
    route: &Route,
    roles: &Roles,
    principal: Option<&Principal>,
    method: &str,
) -> Result<Permit, Denial> {
    let permit = |rule: String| Permit { rule, _decided: () };
    let Access::Restricted {
        default,
        per_method,
        accept,
    } = &route.access
    else {
        return Ok(permit(format!("route {}: public", route.name)));
    };
    let (requirement, rule) = match per_method.get(method) {
        Some(r) => (r, format!("route {} method {method}", route.name)),
        None => (default, format!("route {}", route.name)),
    };
    let Some(principal) = principal else {
        return Err(Denial::Unauthenticated { rule });
    };
    if !accept.contains(&principal.kind) {
        return Err(Denial::Forbidden {
            rule,
            reason: Forbidden::IdentityKindNotAccepted,
        });
    }
    match unmet(requirement, roles, principal) {
        None => Ok(permit(rule)),
        Some(reason) => Err(Denial::Forbidden { rule, reason }),
    }
}

fn unmet(requirement: &Requirement, roles: &Roles, principal: &Principal) -> Option<Forbidden> {
    if requirement.any_role.is_empty() && requirement.all_permissions.is_empty() {
        // A method rule with nothing in it would allow anyone signed in;
        // the policy crate refuses such rules, and so does this.
        return Some(Forbidden::EmptyRequirement);
    }
    if !requirement.any_role.is_empty() && requirement.any_role.is_disjoint(&principal.roles) {
        return Some(Forbidden::MissingRole);
    }
    if !requirement
        .all_permissions
        .iter()
        .all(|p| roles.grants(&principal.roles, p))
    {
        return Some(Forbidden::MissingPermission);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn policy() -> gatehouse_policy::Policy {
        let text = format!(
            r#"{head}
[roles]
admin = ["*"]
operator = ["jobs:run", "jobs:view"]
viewer = ["jobs:view"]
[[api_key]]
name = "ci"
sha256 = "{}"
roles = ["viewer"]
[[route]]
name = "open"
path = "/"
upstream = "http://127.0.0.1:1"
public = true
[[route]]
name = "jobs"
path = "/jobs"
upstream = "http://127.0.0.1:1"
permissions = ["jobs:view"]
[route.methods.POST]
roles = ["operator", "admin"]
"#,
            "ab".repeat(32),
            head = gatehouse_policy::testing::LISTEN_AND_TLS
        );
        gatehouse_policy::parse(Path::new("p.toml"), &text).unwrap()
    }

    fn with_roles(roles: &[&str]) -> Principal {
        let roles = roles.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>();
        Principal::hypothetical(roles, gatehouse_policy::IdentityKind::ApiKey)
    }

    fn route<'a>(policy: &'a gatehouse_policy::Policy, name: &str) -> &'a Route {
        policy.routes.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn public_route_admits_anyone() {
        let p = policy();
        assert!(decide(route(&p, "open"), &p.roles, None, "GET").is_ok());
    }

    #[test]
    fn restricted_route_without_a_caller_is_unauthenticated() {
        let p = policy();
        let denial = decide(route(&p, "jobs"), &p.roles, None, "GET").unwrap_err();
        assert_eq!(
            denial,
            Denial::Unauthenticated {
                rule: "route jobs".into()
            }
        );
    }

    #[test]
    fn permission_from_any_role_admits() {
        let p = policy();
        let jobs = route(&p, "jobs");
        assert!(decide(jobs, &p.roles, Some(&with_roles(&["viewer"])), "GET").is_ok());
        assert!(decide(jobs, &p.roles, Some(&with_roles(&["admin"])), "GET").is_ok());
        let denial = decide(jobs, &p.roles, Some(&with_roles(&[])), "GET").unwrap_err();
        assert_eq!(denial.reason(), "missing-permission");
    }

    #[test]
    fn method_rule_replaces_the_default() {
        let p = policy();
        let jobs = route(&p, "jobs");
        let viewer = with_roles(&["viewer"]);
        let denial = decide(jobs, &p.roles, Some(&viewer), "POST").unwrap_err();
        assert_eq!(denial.reason(), "missing-role");
        assert_eq!(denial.rule(), "route jobs method POST");
        let permit = decide(jobs, &p.roles, Some(&with_roles(&["operator"])), "POST").unwrap();
        assert_eq!(permit.rule, "route jobs method POST");
    }

    #[test]
    fn identity_kind_must_be_accepted() {
        let p = policy();
        // The policy only configures API keys.
        let jwt_caller = Principal::hypothetical(
            ["admin".to_owned()].into(),
            gatehouse_policy::IdentityKind::Jwt,
        );
        let denial = decide(route(&p, "jobs"), &p.roles, Some(&jwt_caller), "GET").unwrap_err();
        assert_eq!(denial.reason(), "identity-kind-not-accepted");
    }
}
