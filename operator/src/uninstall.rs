//! `tiketi-operator --release-finalizers`: the chart's post-delete hook. Once the operator is gone
//! nobody would remove its finalizer, and every TicketEvent it still held would block the deletion of
//! its namespace and `kubectl delete crd`. The hook lets go of them, in the watched namespaces only
//! (another install's TicketEvents are not its business). The targets keep their replicas: to give
//! them back first, delete the TicketEvents before `helm uninstall` (the chart README says so).

use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;
use tiketi_crds::TicketEvent;

use crate::{context::FINALIZER, controller::Watch, scope};

/// Removes the finalizer from every watched TicketEvent holding it; returns how many.
pub async fn release_finalizers(client: kube::Client, watch: &Watch) -> kube::Result<usize> {
    let mut released = 0;
    for ns in watch.scope.namespaces() {
        let api = scope::api::<TicketEvent>(client.clone(), ns.as_deref());
        let mut lp = ListParams::default();
        if let Some(sel) = &watch.selector {
            lp = lp.labels(sel);
        }
        for te in api.list(&lp).await?.items {
            if !te.finalizers().iter().any(|f| f == FINALIZER) {
                continue;
            }
            let rest: Vec<&String> = te.finalizers().iter().filter(|f| *f != FINALIZER).collect();
            // conditional on the resourceVersion listed: a finalizer list changed meanwhile makes the
            // patch fail (and the hook retry) rather than drop another controller's finalizer
            let patch = json!({ "metadata": {
                "resourceVersion": te.resource_version(), "finalizers": rest } });
            let ns = te.namespace().unwrap_or_default();
            scope::api::<TicketEvent>(client.clone(), Some(&ns))
                .patch(
                    &te.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            tracing::info!(te = %format!("{ns}/{}", te.name_any()), "finalizer released");
            released += 1;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures::*, scope::Scope};

    #[tokio::test]
    async fn uninstall_releases_the_finalizers_of_the_watched_ticket_events_only() {
        let mut held = ticket_event("held", chrono::Duration::minutes(10));
        held.metadata.resource_version = Some("7".into());
        let mut free = ticket_event("free", chrono::Duration::minutes(10));
        free.metadata.finalizers = None;
        let list = json!({ "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEventList", "metadata": {},
                           "items": [held, free] });
        let (client, done) = verifier(vec![
            Expect::get(
                "/apis/tiketi.io/v1alpha1/namespaces/default/ticketevents",
                list,
            )
            .with_query("labelSelector=tiketi.io%2Finstance%3Dprod"),
            Expect::patch(
                "/namespaces/default/ticketevents/held",
                json!({ "metadata": { "resourceVersion": "7", "finalizers": [] } }),
                serde_json::to_value(&free).unwrap(),
            ),
        ]);
        let watch = Watch {
            scope: Scope::Namespaces(vec!["default".into()]),
            selector: Some("tiketi.io/instance=prod".into()),
        };
        assert_eq!(release_finalizers(client, &watch).await.unwrap(), 1);
        done.await;
    }
}
