//! News board: public reading, authors edit their own posts, admins pin and delete.

pub mod db;
pub mod http;
pub mod pending;
pub mod views;
