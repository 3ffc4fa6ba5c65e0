//! Ties each opaque C type to the Rust value behind it, so a pointer can only be turned back
//! into the type it was made from (the rustls-ffi `Castable` pattern).
//!
//! Routers and sessions are `Arc`s: the pointer is `Arc::into_raw`, a borrow reads through it
//! for the length of one call, and `free` gives the reference back. Errors are `Box`es.

use std::sync::Arc;

/// An opaque C type whose pointer is an `Arc<Self::RustType>`.
pub(crate) trait ArcCastable {
    type RustType;
}

/// An opaque C type whose pointer is a `Box<Self::RustType>`.
pub(crate) trait BoxCastable {
    type RustType;
}

/// Hands one reference to C.
pub(crate) fn arc_into_ptr<C: ArcCastable>(value: Arc<C::RustType>) -> *mut C {
    Arc::into_raw(value).cast_mut().cast()
}

/// Borrows the value behind `ptr` for the current call; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`arc_into_ptr`] for the same `C` and has not been freed, and
/// no other thread frees it while the borrow lives (the thread contract in the header).
pub(crate) unsafe fn arc_borrow<'a, C: ArcCastable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: per the contract above the pointee is a live `C::RustType` inside an `Arc`.
    (!ptr.is_null()).then(|| unsafe { &*ptr.cast::<C::RustType>() })
}

/// A new reference to the value behind `ptr`, for work that outlives the call.
///
/// # Safety
/// As for [`arc_borrow`].
pub(crate) unsafe fn arc_clone<C: ArcCastable>(ptr: *const C) -> Option<Arc<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr.cast::<C::RustType>();
    // SAFETY: `ptr` came from `Arc::into_raw` and that reference is still held by C.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Takes back the reference C held; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from [`arc_into_ptr`] for the same `C`, and C never uses it again.
pub(crate) unsafe fn arc_take<C: ArcCastable>(ptr: *const C) -> Option<Arc<C::RustType>> {
    // SAFETY: per the contract above.
    (!ptr.is_null()).then(|| unsafe { Arc::from_raw(ptr.cast::<C::RustType>()) })
}

/// Hands a box to C.
pub(crate) fn box_into_ptr<C: BoxCastable>(value: Box<C::RustType>) -> *mut C {
    Box::into_raw(value).cast()
}

/// Borrows the boxed value behind `ptr`; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`box_into_ptr`] for the same `C` and has not been freed.
pub(crate) unsafe fn box_borrow<'a, C: BoxCastable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: per the contract above.
    (!ptr.is_null()).then(|| unsafe { &*ptr.cast::<C::RustType>() })
}

/// Takes back a box; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from [`box_into_ptr`] for the same `C`, and C never uses it again.
pub(crate) unsafe fn box_take<C: BoxCastable>(ptr: *mut C) -> Option<Box<C::RustType>> {
    // SAFETY: per the contract above.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}
