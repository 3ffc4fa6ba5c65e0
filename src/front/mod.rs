//! The fronts: how clients reach a router besides linking the library and calling
//! `Session::handle` themselves: one client on stdio, or many over Streamable HTTP.

pub mod http;
pub mod stdio;
