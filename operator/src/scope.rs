//! Which TicketEvents an install reconciles: those of its watched namespaces (`WATCH_NAMESPACES`:
//! by default only the operator's own namespace, `*` for every namespace) and, optionally, only
//! those matching a label selector (`TICKET_EVENT_SELECTOR`). Two releases on one cluster then never
//! act on each other's TicketEvents or targets: give them disjoint namespaces, or disjoint selectors.

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (`*`): needs the cluster-wide RBAC.
    All,
    /// These namespaces only (each needs the Role of the chart's RBAC).
    Namespaces(Vec<String>),
}

/// A DNS-1123 label, what a namespace name is.
fn namespace_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Scope {
    /// `watch`: empty (the operator's own namespace `own`), `*`, or comma-separated namespaces.
    pub fn parse(watch: &str, own: &str) -> Result<Self, String> {
        let watch = watch.trim();
        if watch.is_empty() {
            return Ok(Scope::Namespaces(vec![own.to_string()]));
        }
        if watch == "*" {
            return Ok(Scope::All);
        }
        let mut names: Vec<String> = Vec::new();
        for n in watch.split(',').map(str::trim) {
            if !namespace_name(n) {
                return Err(format!(
                    "WATCH_NAMESPACES: {n:?} is not a namespace name (use `*` alone for every namespace)"
                ));
            }
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
        Ok(Scope::Namespaces(names))
    }

    /// One namespace per watch (`None`: all namespaces).
    pub fn namespaces(&self) -> Vec<Option<String>> {
        match self {
            Scope::All => vec![None],
            Scope::Namespaces(v) => v.iter().cloned().map(Some).collect(),
        }
    }
}

pub fn api<K>(client: Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

pub fn api_dynamic(client: Client, ns: Option<&str>, ar: &ApiResource) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client, ns, ar),
        None => Api::all_with(client, ar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_to_the_own_namespace_and_star_is_explicit() {
        assert_eq!(
            Scope::parse("", "tiketi"),
            Ok(Scope::Namespaces(vec!["tiketi".into()]))
        );
        assert_eq!(Scope::parse(" * ", "tiketi"), Ok(Scope::All));
        assert_eq!(
            Scope::parse("a, b,a", "tiketi"),
            Ok(Scope::Namespaces(vec!["a".into(), "b".into()]))
        );
        for bad in ["a,*", "A", "a,,b", "-a", "a b"] {
            assert!(Scope::parse(bad, "tiketi").is_err(), "{bad:?} accepted");
        }
    }
}
