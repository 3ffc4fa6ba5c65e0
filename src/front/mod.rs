//! Fronts that serve the router to clients.

pub mod http;
