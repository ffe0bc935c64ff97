//! Prints the TicketEvent CRD as YAML (`cargo run -p tiketi-crds --bin crdgen > crds/ticketevent.yaml`).

use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    print!(
        "{}",
        serde_yaml::to_string(&tiketi_crds::TicketEvent::crd())?
    );
    Ok(())
}
