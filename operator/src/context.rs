//! What every part of a pass shares: the `Context` a pass runs with (clients, stores, leadership
//! fence, clock, what this install may do), the names the operator writes under (field manager,
//! finalizer) and the annotations it reads and writes on other objects.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Client,
    api::DynamicObject,
    runtime::{
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};
use tiketi_crds::TicketEvent;
use tokio::sync::Mutex;

use crate::{Error, Result, clock::Clock, leader::Fence, metrics::Metrics};

/// The field manager of the operator's server-side applies and the controller named in its Events.
pub const MANAGER: &str = "tiketi-operator";
/// Held while the operator may still have to give the target back.
pub const FINALIZER: &str = "tiketi.io/restore-replicas";

/// How long a pass waits for the stores to hold a first complete list before it fails (and is
/// retried with backoff): deciding without them would miss a sibling sale or an HPA on the target.
pub const STORES_READY_WITHIN: Duration = Duration::from_secs(30);

/// What the reconciler reads without asking the API server each pass.
#[derive(Clone)]
pub struct Stores {
    pub tickets: Store<TicketEvent>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub scaled_objects: Store<DynamicObject>,
    /// Whether ScaledObjects are served (KEDA installed) at start: only then is their store waited for.
    pub keda: bool,
}

impl Stores {
    /// Until each store has had a complete list: a pass on a half-filled store would miss an HPA
    /// driving the target (and scale against it) or a sibling sale (and scale below its wish).
    pub async fn ready(&self) -> Result<()> {
        let all = async {
            self.tickets.wait_until_ready().await?;
            self.hpas.wait_until_ready().await?;
            if self.keda {
                self.scaled_objects.wait_until_ready().await?;
            }
            Ok::<_, kube::runtime::reflector::store::WriterDropped>(())
        };
        match tokio::time::timeout(STORES_READY_WITHIN, all).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::StoresNotReady),
        }
    }
}

/// What every pass of this process shares, whichever namespace's controller runs it.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub recorder: Recorder,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<fred::clients::Pool>,
    pub keys: tiketi_core::keys::Keys,
    pub metrics: Arc<Metrics>,
    /// Leadership: every write asks it first, and a pass ends when it is lost.
    pub fence: Fence,
    /// The API server's time (phases, cooldowns, capacity timestamps).
    pub clock: Arc<Clock>,
    pub allow: Allow,
    /// This replica's identity (its Lease holder name): recorded on each target write
    /// (`WRITTEN_BY_ANNOTATION`), so who scaled a Deployment last can be told after a takeover.
    pub identity: String,
}

/// What a pass runs with: the shared clients and the stores of its controller.
pub struct Context {
    pub shared: Shared,
    pub stores: Stores,
    /// consecutive failures per object, for exponential backoff (kube has no per-object backoff)
    pub failures: Mutex<HashMap<ObjectRef<TicketEvent>, u32>>,
}

/// What this install may do beyond reading and scaling (its RBAC grants exactly these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// `otherAutoscalers: Cooperate`: patch HPAs and ScaledObjects. Without it such a TicketEvent is
    /// treated as `Report` (its status says so).
    pub cooperate: bool,
    /// `leadTime: auto`: list the target's pods to measure their start-up. Without it `auto` keeps
    /// its default lead time.
    pub pod_starts: bool,
}

impl Context {
    /// Before each write of a pass: still leading, or the pass stops here.
    pub fn fence(&self) -> Result<()> {
        if self.shared.fence.leads() {
            Ok(())
        } else {
            Err(Error::NotLeading)
        }
    }
}

/// Annotation on an HPA whose `minReplicas` the operator raised: the value to restore.
pub const ORIGINAL_MIN_ANNOTATION: &str = "tiketi.io/original-min-replicas";
/// KEDA's pause annotation: the ScaledObject holds the target at this many replicas.
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Set beside KEDA's annotation, so only a pause the operator made is lifted by it.
pub const PAUSED_BY_ANNOTATION: &str = "tiketi.io/paused-by";
/// On a target: the identity (Lease holder name) of the replica that last wrote its replicas or a
/// wish, in the same fenced update.
pub const WRITTEN_BY_ANNOTATION: &str = "tiketi.io/written-by";
/// KEDA's label on the HPA it creates for a ScaledObject.
pub const KEDA_SCALED_OBJECT_LABEL: &str = "scaledobject.keda.sh/name";

/// Annotations on the target: one per live sale, its wish. Written in the same resourceVersion-fenced
/// update as the replicas, so a pass reads every sibling's wish at exactly the version of the
/// replicas it decides from (a wish read from the TicketEvents' status would lag the scale it came
/// with, and one sale could undo another's fresh scale-up).
pub const WISH_ANNOTATION_PREFIX: &str = "wish.tiketi.io/";

/// The annotation key of TicketEvent `name`'s wish (an annotation name is at most 63 characters:
/// longer names are cut and made unique by a hash).
pub fn wish_key(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return format!("{WISH_ANNOTATION_PREFIX}{name}");
    }
    // FNV-1a: stable across builds and platforms
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let head = name[..MAX - 9].trim_end_matches(['-', '.']);
    format!("{WISH_ANNOTATION_PREFIX}{head}-{:08x}", hash as u32)
}
