//! The fronts: how clients reach a router besides linking the library and calling
//! `Session::handle` themselves.

pub mod stdio;
