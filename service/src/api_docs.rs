//! `/api-docs`: the OpenAPI 3 document of the REST API, built with utoipa from the operation table
//! below and the error codes of `codes.rs` (each operation lists the codes it can answer, under
//! the status it answers them with) and the typed request bodies of [`bodies`] (schemas derived
//! from the handlers' body types). `/api-docs/ui` renders it (Scalar; the browser loads its
//! script from a CDN). A test reads every route declaration of the sources and fails when a routed
//! method and path is missing here, or documented but not routed.

use std::collections::BTreeMap;

use axum::{Json, Router, routing::get};
use utoipa::{
    ToSchema,
    openapi::{
        ComponentsBuilder, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
        PathsBuilder, RefOr, Required, ResponseBuilder,
        content::ContentBuilder,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
        schema::{ObjectBuilder, Ref, Schema, SchemaType, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};
use utoipa_scalar::{Scalar, Servable};

use crate::{codes::Code, state::AppState};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

/// One documented operation.
pub struct Op {
    pub method: HttpMethod,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// The success status.
    pub ok: u16,
    /// The refusals this operation answers, with their status (auth, rate limit, 5xx are added
    /// from `access` and for every operation).
    pub errors: &'static [(u16, Code)],
}

use Access::{Admin, Public, User};
use Code::*;
use HttpMethod::{Delete, Get, Patch, Post, Put};

const fn op(
    method: HttpMethod,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    access: Access,
    ok: u16,
    errors: &'static [(u16, Code)],
) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        access,
        ok,
        errors,
    }
}

const HOLD_ERRORS: &[(u16, Code)] = &[
    (400, InvalidId),
    (400, InvalidInput),
    (400, InvalidJson),
    (400, SeatNotFound),
    (400, NotOnSale),
    (400, SeatTaken),
    (400, PerUserLimit),
    (400, AmountTooLarge),
    (403, QueueNotAdmitted),
    (429, RateLimited),
    (503, QueueUnavailable),
];

#[rustfmt::skip] // one operation per row reads as the table it is
pub const OPERATIONS: &[Op] = &[
    op(Post, "/api/auth/register", "auth", "Create an account; answers a token", Public, 201, &[(400, ValidationFailed), (400, EmailTaken), (400, InvalidJson), (429, RateLimited), (503, ServerBusy)]),
    op(Post, "/api/auth/login", "auth", "Log in with email and password; answers a 7-day token", Public, 200, &[(400, ValidationFailed), (401, InvalidCredentials), (400, InvalidJson), (429, RateLimited), (503, ServerBusy)]),
    op(Get, "/api/events", "events", "List events (status, q, page, limit)", Public, 200, &[(400, InvalidInput)]),
    op(Get, "/api/events/{id}", "events", "One event with its ticket types", Public, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Get, "/api/tickets/event/{event_id}", "events", "Ticket types of an event", Public, 200, &[(400, InvalidId)]),
    op(Get, "/api/tickets/availability/{ticket_type_id}", "events", "Stock of one ticket type", Public, 200, &[(400, InvalidId), (404, TicketTypeNotFound)]),
    op(Get, "/api/seats/layouts", "seats", "Seat layouts", Public, 200, &[]),
    op(Get, "/api/seats/events/{event_id}", "seats", "Seat map of an event (strong ETag; 304 on a matching If-None-Match)", Public, 200, &[(400, InvalidId), (404, EventNotFound), (404, SeatNotFound)]),
    op(Post, "/api/seats/reserve", "seats", "Hold seats for 5 minutes (one reservation)", User, 201, HOLD_ERRORS,),
    op(Get, "/api/seats/reservation/{reservation_id}", "seats", "A seat reservation of the caller", User, 200, &[(400, InvalidId), (404, ReservationNotFound)]),
    op(Post, "/api/reservations", "reservations", "Book ticket-type quantities", User, 201, &[(400, InvalidId), (400, InvalidInput), (400, InvalidJson), (404, EventNotFound), (400, NotOnSale), (400, TicketTypeNotFound), (400, SoldOut), (400, PerUserLimit), (400, AmountTooLarge), (403, QueueNotAdmitted), (429, RateLimited), (503, QueueUnavailable)]),
    op(Get, "/api/reservations/my", "reservations", "The caller's reservations", User, 200, &[]),
    op(Get, "/api/reservations/{id}", "reservations", "One reservation of the caller", User, 200, &[(400, InvalidId), (404, ReservationNotFound)]),
    op(Post, "/api/reservations/{id}/cancel", "reservations", "Cancel; seats and stock return, a payment is refunded", User, 200, &[(400, InvalidId), (400, ReservationNotFound), (400, AlreadyCancelled)]),
    op(Post, "/api/payments/process", "payments", "Pay a held reservation (payment intent recorded first; a retry reuses its charge, never a refunded one)", User, 200, &[(400, InvalidInput), (400, InvalidId), (400, InvalidPaymentMethod), (400, ReservationNotFound), (400, AlreadyPaid), (400, ReservationCancelled), (400, HoldExpired), (429, RateLimited), (502, PaymentFailed)]),
    op(Get, "/api/payments/methods", "payments", "Payment methods", Public, 200, &[]),
    op(Post, "/api/queue/check/{event_id}", "queue", "Enter the waiting room (or keep one's place)", User, 200, &[(400, InvalidId), (404, EventNotFound), (429, RateLimited)]),
    op(Get, "/api/queue/status/{event_id}", "queue", "One's place in the waiting room", User, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Post, "/api/queue/leave/{event_id}", "queue", "Leave the waiting room", User, 200, &[(400, InvalidId)]),
    op(Get, "/api/api/queue/status/{event_id}", "queue", "Alias the frontend requests", User, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Post, "/api/api/queue/leave/{event_id}", "queue", "Alias the frontend requests", User, 200, &[(400, InvalidId)]),
    op(Get, "/api/queue/admin/{event_id}", "admin", "Waiting-room figures of an event", Admin, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Post, "/api/queue/admin/clear/{event_id}", "admin", "Empty an event's waiting room", Admin, 200, &[(400, InvalidId)]),
    op(Get, "/api/news", "news", "News posts", Public, 200, &[]), op(Post, "/api/news", "news", "Write a news post", User, 201, &[(400, InvalidInput), (400, InvalidJson), (400, AuthorNotFound)]),
    op(Get, "/api/news/{id}", "news", "One news post (counts a view; counts are written in batches)", Public, 200, &[(400, InvalidId), (404, NewsNotFound)]),
    op(Put, "/api/news/{id}", "news", "Edit one's news post", User, 200, &[(400, InvalidId), (400, InvalidInput), (403, NotOwner), (404, NewsNotFound)]),
    op(Delete, "/api/news/{id}", "news", "Delete one's news post (admins: any)", User, 200, &[(400, InvalidId), (403, NotOwner), (404, NewsNotFound)]),
    op(Post, "/api/image/upload", "admin", "Upload a poster (PNG, JPEG, GIF, WebP, at most 5 MB)", Admin, 200, &[(400, InvalidImage), (413, PayloadTooLarge)]),
    op(Get, "/api/admin/dashboard/stats", "admin", "Dashboard figures", Admin, 200, &[]),
    op(Get, "/api/admin/reservations", "admin", "All reservations (status, page, limit)", Admin, 200, &[]),
    op(Patch, "/api/admin/reservations/{id}/status", "admin", "Change a reservation's status through the lifecycle (a paid one can only be cancelled, which refunds it)", Admin, 200, &[(400, InvalidId), (400, InvalidInput), (400, InvalidStatusChange), (400, ReservationPaid), (400, PaymentRequired), (404, ReservationNotFound), (409, InvalidStatusChange)]),
    op(Get, "/api/admin/seat-layouts", "admin", "Seat layouts", Admin, 200, &[]),
    op(Post, "/api/admin/events", "admin", "Create an event", Admin, 201, &[(400, InvalidInput), (400, InvalidJson)]),
    op(Put, "/api/admin/events/{id}", "admin", "Edit an event (only the given fields)", Admin, 200, &[(400, InvalidId), (400, InvalidInput), (404, EventNotFound)]),
    op(Delete, "/api/admin/events/{id}", "admin", "Delete an event (its reservations are cancelled)", Admin, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Post, "/api/admin/events/{id}/cancel", "admin", "Cancel an event (reservations cancelled, payments refunded)", Admin, 200, &[(400, InvalidId), (404, EventNotFound)]),
    op(Post, "/api/admin/events/{id}/generate-seats", "admin", "Create the seats of the event's layout", Admin, 200, &[(400, InvalidId), (404, EventNotFound), (400, Conflict)]),
    op(Delete, "/api/admin/events/{id}/seats", "admin", "Delete an event's seats (none may be booked)", Admin, 200, &[(400, InvalidId), (400, Conflict)]),
    op(Post, "/api/admin/events/{id}/tickets", "admin", "Add a ticket type", Admin, 201, &[(400, InvalidId), (400, InvalidInput), (404, EventNotFound)]),
    op(Put, "/api/admin/tickets/{id}", "admin", "Edit a ticket type", Admin, 200, &[(400, InvalidId), (400, InvalidInput), (400, Conflict), (404, TicketTypeNotFound)]),
    op(Get, "/health", "health", "Liveness with process figures", Public, 200, &[]),
    op(Get, "/health/db", "health", "PostgreSQL reachability", Public, 200, &[]),
    op(Get, "/health/redis", "health", "Redis reachability", Public, 200, &[]),
    op(Get, "/health/all", "health", "Every dependency", Public, 200, &[]),
    op(Get, "/health/ready", "health", "Readiness: this replica can serve (not draining); dependencies reported, not required", Public, 200, &[]),
    op(Get, "/metrics", "health", "Prometheus metrics (OpenMetrics text)", Public, 200, &[]),
];

/// The typed request body of one operation: its schema's name and the schemas it needs.
pub struct BodyDoc {
    pub method: HttpMethod,
    pub path: &'static str,
    pub name: String,
    schemas: Vec<(String, RefOr<Schema>)>,
}

fn body<T: ToSchema>(method: HttpMethod, path: &'static str) -> BodyDoc {
    let name = T::name().into_owned();
    let mut schemas = vec![(name.clone(), T::schema())];
    T::schemas(&mut schemas);
    BodyDoc {
        method,
        path,
        name,
        schemas,
    }
}

/// Every operation that reads a typed body (`body::Body<T>`).
pub fn bodies() -> Vec<BodyDoc> {
    use crate::{
        admin::{input::EventBody, input::TicketTypeBody, reservations::StatusBody},
        auth::http::AccountBody,
        news::http::NewsBody,
        payments::http::ProcessBody,
        reservations::http::BookBody,
        seats::http::HoldBody,
    };
    vec![
        body::<AccountBody>(Post, "/api/auth/register"),
        body::<AccountBody>(Post, "/api/auth/login"),
        body::<HoldBody>(Post, "/api/seats/reserve"),
        body::<BookBody>(Post, "/api/reservations"),
        body::<ProcessBody>(Post, "/api/payments/process"),
        body::<NewsBody>(Post, "/api/news"),
        body::<NewsBody>(Put, "/api/news/{id}"),
        body::<StatusBody>(Patch, "/api/admin/reservations/{id}/status"),
        body::<EventBody>(Post, "/api/admin/events"),
        body::<EventBody>(Put, "/api/admin/events/{id}"),
        body::<TicketTypeBody>(Post, "/api/admin/events/{id}/tickets"),
        body::<TicketTypeBody>(Put, "/api/admin/tickets/{id}"),
    ]
}

/// The refusals every operation of an access class can answer.
fn implied(access: Access) -> Vec<(u16, Code)> {
    let mut out = Vec::new();
    if access != Public {
        out.extend([
            (401, AuthRequired),
            (401, TokenInvalid),
            (401, TokenExpired),
            (401, UserNotFound),
        ]);
    }
    if access == Admin {
        out.push((403, AdminOnly));
    }
    out.extend([
        (500, Internal),
        (503, DbBusy),
        (503, DbTimeout),
        (503, RedisUnavailable),
    ]);
    out
}

fn error_schema() -> ObjectBuilder {
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    ObjectBuilder::new()
        .description(Some(
            "An error answer: `error` (and, for business refusals, `success: false` + `message`) \
             with the contract's text, and a stable machine-readable `code` (docs/errors.md).",
        ))
        .property("error", ObjectBuilder::new().schema_type(Type::String))
        .required("error")
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes)),
        )
        .required("code")
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("success", ObjectBuilder::new().schema_type(Type::Boolean))
}

fn operation(op: &Op, body: Option<&BodyDoc>) -> utoipa::openapi::path::Operation {
    let mut b = OperationBuilder::new()
        .summary(Some(op.summary))
        .tag(op.tag)
        .response(
            op.ok.to_string(),
            ResponseBuilder::new().description("Success").build(),
        );
    for name in op
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into()))),
                )),
        );
    }
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for (status, code) in op.errors.iter().copied().chain(implied(op.access)) {
        let codes = by_status.entry(status).or_default();
        if !codes.contains(&code.as_str()) {
            codes.push(code.as_str());
        }
    }
    for (status, codes) in by_status {
        let description = format!("`code`: {}", codes.join(", "));
        b = b.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        );
    }
    if let Some(body) = body {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(&body.name)))
            .build();
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", content)
                .build(),
        ));
    }
    if op.access != Public {
        b = b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    b.build()
}

/// The whole document.
pub fn document() -> OpenApi {
    let bodies = bodies();
    let mut paths = PathsBuilder::new();
    for op in OPERATIONS {
        let body = bodies
            .iter()
            .find(|b| b.method == op.method && b.path == op.path);
        paths = paths.path(
            op.path,
            PathItem::new(op.method.clone(), operation(op, body)),
        );
    }
    let mut components = ComponentsBuilder::new().schema("Error", error_schema());
    for (name, schema) in bodies.into_iter().flat_map(|b| b.schemas) {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("TIKETI REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Wire-compatible with the TIKETI frontend. Realtime (Socket.IO) is served on \
                     the same port at /socket.io/. Every error answer carries a stable `code`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(
            components
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .build(),
                    ),
                )
                .build(),
        ))
        .build()
}

pub fn router() -> Router<AppState> {
    let doc = document();
    let json = doc.clone();
    Router::new()
        .route("/api-docs", get(move || async move { Json(json) }))
        .merge(Scalar::with_url("/api-docs/ui", doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_docs_every_operation_is_documented_once_with_its_codes() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for op in OPERATIONS {
            let m = serde_json::to_value(&op.method).unwrap();
            let m = m.as_str().unwrap().to_lowercase();
            assert!(seen.insert((m.clone(), op.path)), "{m} {} twice", op.path);
            let o = &doc["paths"][op.path][&m];
            assert!(o.is_object(), "{m} {} missing", op.path);
            for (status, code) in op.errors {
                let d = o["responses"][status.to_string()]["description"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    d.contains(code.as_str()),
                    "{m} {}: {status} {code:?}",
                    op.path
                );
            }
        }
        let codes = &doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().map(Vec::len), Some(Code::ALL.len()));
    }

    /// The `T` of every `Body<T>` extractor in the sources below `dir`.
    fn extracted_body_types(dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(extracted_body_types(path.to_str().unwrap()));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let names = text.split("Body(body): Body<").skip(1);
                let names = names.filter_map(|rest| rest.split_once('>').map(|(name, _)| name));
                let idents = names.filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'));
                out.extend(idents.map(str::to_string));
            }
        }
        out
    }

    /// Each typed body is on a documented operation and its schema (and the schemas it refers
    /// to) are in the components.
    #[test]
    fn api_docs_typed_bodies_are_documented_with_their_schemas() {
        let doc = serde_json::to_value(document()).unwrap();
        for b in bodies() {
            let m = serde_json::to_value(&b.method).unwrap();
            let m = m.as_str().unwrap().to_lowercase();
            let body = &doc["paths"][b.path][&m]["requestBody"];
            let r = body["content"]["application/json"]["schema"]["$ref"].as_str();
            assert_eq!(
                r,
                Some(format!("#/components/schemas/{}", b.name).as_str()),
                "{m} {}",
                b.path
            );
        }
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{name} unresolved"
            );
        }
        // every body type a handler extracts is listed in `bodies`
        let listed: Vec<String> = bodies().into_iter().map(|b| b.name).collect();
        let taken = extracted_body_types(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        assert!(taken.len() >= listed.len(), "{taken:?}");
        for taken in taken {
            assert!(
                listed.contains(&taken),
                "Body<{taken}> is not in api_docs::bodies"
            );
        }
        let event = &doc["components"]["schemas"]["EventBody"]["properties"];
        assert_eq!(
            event["ticketTypes"]["items"]["$ref"],
            "#/components/schemas/TicketTypeBody"
        );
        assert_eq!(event["seatLayoutId"]["type"], "string");
    }
}
