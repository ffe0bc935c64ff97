//! End-to-end on real pods: the chart installed by `E2E_REAL_NODE=1 e2e/run.sh` on the local control plane's
//! real node (kubelet + containerd), with the images built on this machine. The service and the operator run as
//! pods there; these tests reach them the way users and platform teams do: through the Service (kube-proxy), the
//! API server, PostgreSQL and Redis. Without the real node (the default `make e2e`, or kind) each test says it is
//! skipped and passes: the kwok suite in cluster.rs covers the API side there.

mod cluster;
mod faults;
mod hostile;
mod operator;
mod proxy;
mod redis_cluster;
mod rehearsal;
mod scaling;
mod sockets;
mod support;
mod timeline;
mod verdicts;
