/* Compiles the public header twice in one translation unit, as C11 and as C++17, with every
 * warning an error: the include guard, the extern "C" block and the declarations must all
 * be clean. Linking is not needed; run.sh only compiles this file. */
#include "mcprouter.h"
#include "mcprouter.h"

#if !defined(MCPROUTER_VERSION_MAJOR) || !defined(MCPROUTER_VERSION_MINOR) || !defined(MCPROUTER_VERSION_PATCH)
#error "version macros missing"
#endif

#ifdef __cplusplus
static_assert(MCPROUTER_STATUS_OK == 0, "OK is 0");
static_assert(MCPROUTER_STATUS_PANIC == 13, "codes are fixed");
static_assert(sizeof(mcprouter_str) == sizeof(const char *) + sizeof(size_t), "mcprouter_str layout");
#else
_Static_assert(MCPROUTER_STATUS_OK == 0, "OK is 0");
_Static_assert(MCPROUTER_STATUS_PANIC == 13, "codes are fixed");
_Static_assert(sizeof(mcprouter_str) == sizeof(const char *) + sizeof(size_t), "mcprouter_str layout");
#endif

/* Every function, taken by address, so each declaration is checked for use. */
typedef void (*any_fn)(void);
const any_fn mcprouter_header_check_functions[] = {
    (any_fn)mcprouter_router_new_from_yaml, (any_fn)mcprouter_router_new_from_file,
    (any_fn)mcprouter_router_metrics,       (any_fn)mcprouter_router_status,
    (any_fn)mcprouter_router_shutdown,      (any_fn)mcprouter_router_free,
    (any_fn)mcprouter_session_open,         (any_fn)mcprouter_session_handle,
    (any_fn)mcprouter_session_next_event,   (any_fn)mcprouter_session_close,
    (any_fn)mcprouter_session_handle_async, (any_fn)mcprouter_string_free,
    (any_fn)mcprouter_version,              (any_fn)mcprouter_error_status,
    (any_fn)mcprouter_error_message,        (any_fn)mcprouter_error_free,
    (any_fn)mcprouter_status_str,           (any_fn)mcprouter_set_log_callback,
};
