//! `gatehouse-gateway explain`: the decision for a hypothetical caller, the
//! rule that made it, and a table of which roles reach which routes.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use gatehouse_policy::{Access, IdentityKind, Policy};

use crate::access::authz::{self, Denial};
use crate::edge::path::normalize;
use crate::identity::Principal;
use crate::snapshot::RouteTable;

pub fn run(
    policy_path: &Path,
    roles: &[String],
    method: &str,
    path: &str,
) -> miette::Result<String> {
    let policy = gatehouse_policy::load(policy_path).map_err(|e| e.report())?;
    let path = normalize(path.as_bytes()).map_err(|e| miette::miette!("path {path}: {e}"))?;
    let roles: BTreeSet<String> = roles.iter().filter(|r| !r.is_empty()).cloned().collect();
    let method = method.to_ascii_uppercase();
    let mut out = String::new();

    let table = RouteTable::new(&policy.routes);
    match table.find(None, &path) {
        Err(miss) => writeln!(out, "DENY 404 ({}): {}", miss.reason(), path.as_str()).ok(),
        Ok(prepared) => {
            let route = &prepared.route;
            let principal = principal_for(route, &roles);
            let rule_method = if method == "HEAD" {
                "GET"
            } else {
                method.as_str()
            };
            let verdict = match authz::decide(route, &policy.roles, principal.as_ref(), rule_method)
            {
                Ok(permit) => format!("ALLOW by {}", permit.rule),
                Err(denial @ Denial::Unauthenticated { .. }) => {
                    format!("DENY 401 ({}) by {}", denial.reason(), denial.rule())
                }
                Err(denial) => format!("DENY 403 ({}) by {}", denial.reason(), denial.rule()),
            };
            writeln!(
                out,
                "{method} {} as [{}]: {verdict}",
                path.as_str(),
                join(&roles)
            )
            .ok()
        }
    };
    out.push('\n');
    out.push_str(&reach_table(&policy));
    Ok(out)
}

/// A caller with `roles`, signed in with a kind the route accepts.
fn principal_for(route: &gatehouse_policy::Route, roles: &BTreeSet<String>) -> Option<Principal> {
    if roles.is_empty() {
        return None;
    }
    let kind = match &route.access {
        Access::Restricted { accept, .. } => {
            accept.iter().next().copied().unwrap_or(IdentityKind::Jwt)
        }
        Access::Public => IdentityKind::Jwt,
    };
    Some(Principal::hypothetical(roles.clone(), kind))
}

/// Rows: routes (and their method rules); columns: roles and anonymous.
fn reach_table(policy: &Policy) -> String {
    let roles: Vec<&String> = policy.roles.0.keys().collect();
    let mut out = String::from("route / method");
    for role in &roles {
        write!(out, "\t{role}").ok();
    }
    out.push_str("\tanonymous\n");
    for route in &policy.routes {
        let methods: Vec<String> = match &route.access {
            Access::Restricted { per_method, .. } => std::iter::once("*".to_owned())
                .chain(per_method.keys().cloned())
                .collect(),
            Access::Public => vec!["*".to_owned()],
        };
        for method in methods {
            let probe = if method == "*" {
                "GET"
            } else {
                method.as_str()
            };
            write!(out, "{} {} {method}", route.name, route.path.as_str()).ok();
            for role in &roles {
                let principal = principal_for(route, &[(*role).clone()].into());
                let ok = authz::decide(route, &policy.roles, principal.as_ref(), probe).is_ok();
                out.push_str(if ok { "\tyes" } else { "\t-" });
            }
            let anonymous = authz::decide(route, &policy.roles, None, probe).is_ok();
            out.push_str(if anonymous { "\tyes\n" } else { "\t-\n" });
        }
    }
    out
}

fn join(roles: &BTreeSet<String>) -> String {
    roles.iter().cloned().collect::<Vec<_>>().join(",")
}
