//! Attempts: one routed call sent to its candidates under the resilience rules.
//!
//! A pool balances, a fallback chain tries its candidates in order, each attempt passes its
//! backend's breaker, and moving on after an attempt that may have run needs the call to be
//! idempotent. Extra attempts spend the retry budget, and one hard deadline covers them
//! all. [`run`] holds these rules over the [`Endpoint`] interface, with the attempt itself
//! passed in, so they are unit-tested here with fake endpoints and a hand-driven clock.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::routing::Route;
use super::{Out, Session, invalid};
use crate::backend::{Backend, CallError, Deadline};
use crate::balance::SharedBalancer;
use crate::breaker::{Outcome as BreakerOutcome, SharedBreaker};
use crate::budget::RetryBudget;
use crate::core::View;
use crate::jsonrpc;

/// The candidates for one call, and whether it may be sent again after an attempt that
/// may have run.
pub(super) struct Plan<'v> {
    /// A pool's members or a single owner are the view's own list, borrowed; a fallback
    /// chain's order is built for the call.
    pub order: std::borrow::Cow<'v, [usize]>,
    pub is_pool: bool,
    pub is_chain: bool,
    pub idempotent: bool,
}

/// What the rules need to know of a backend.
pub(crate) trait Endpoint {
    fn name(&self) -> &str;
    /// Whether calls may go here now, judged without reserving anything.
    fn routable(&self) -> bool;
    /// The error object for a call that cannot go here because the backend is down.
    fn unavailable(&self) -> Out;
    fn breaker(&self) -> &SharedBreaker;
    /// Passive health: how an attempt that reached the backend ended.
    fn observe(&self, ok: bool);
}

impl Endpoint for Arc<Backend> {
    fn name(&self) -> &str {
        Backend::name(self)
    }

    fn routable(&self) -> bool {
        Backend::routable(self)
    }

    fn unavailable(&self) -> Out {
        let info = self.info();
        let up = self.is_ready() && self.health.lock().is_healthy();
        let why = if !self.is_ready() {
            info.facts.last_error.unwrap_or_else(|| format!("it is {}", info.state.as_str()))
        } else if !up {
            "it failed its health checks".to_owned()
        } else {
            "its circuit breaker is open".to_owned()
        };
        let code = if up { jsonrpc::CIRCUIT_OPEN } else { jsonrpc::BACKEND_UNAVAILABLE };
        Out::error(code, &format!("backend {:?} is unavailable: {why}", Backend::name(self)))
    }

    fn breaker(&self) -> &SharedBreaker {
        &self.breaker
    }

    fn observe(&self, ok: bool) {
        Backend::observe(self, ok);
    }
}

/// How one attempt ended.
pub(super) enum Attempt {
    /// The backend answered, with a result or an error it meant: the call is over either way.
    Answered(Out),
    /// The client cancelled the call.
    Cancelled,
    /// Never sent (queue full, backend down): always safe to try elsewhere. The error.
    NotSent(Out),
    /// Sent, then lost (timeout, the backend died): the call may have run. The error object.
    Lost(Out),
}

/// Everything the rules consult besides the endpoints.
pub(super) struct Rules<'a> {
    pub plan: &'a Plan<'a>,
    /// The owner's members: a balancer's index `i` is endpoint `members[i]`.
    pub members: &'a [usize],
    /// Set when the plan is a pool.
    pub balancer: Option<&'a SharedBalancer>,
    pub sticky: Option<u64>,
    pub budget: &'a RetryBudget,
    /// No attempt starts after this.
    pub hard: Instant,
    /// The owner's name, for "no backend is available".
    pub owner: &'a str,
    pub now: &'a dyn Fn() -> Instant,
    /// Counts an attempt beyond the first: a fallback (`true`) or a retry.
    pub extra: &'a dyn Fn(bool),
}

pub(super) fn timeout_out() -> Out {
    Out::error(jsonrpc::REQUEST_TIMEOUT, "request timed out")
}

fn circuit_open(backend: &str) -> Out {
    Out::error(jsonrpc::CIRCUIT_OPEN, &format!("backend {backend:?} is failing: its circuit breaker is open"))
}

/// Nothing (more) to try: the last attempt's error, or why there was none.
fn exhausted(last: Option<(Out, usize)>, owner: &str, tried: &Tried) -> (Out, Option<usize>) {
    if let Some((o, b)) = last {
        return (o, Some(b));
    }
    let why = if tried.is_empty() { "no backend is available" } else { "every backend failed" };
    (Out::error(jsonrpc::BACKEND_UNAVAILABLE, &format!("{owner}: {why}")), None)
}

/// The endpoints a call has tried: nearly always one or two, so the first four are kept
/// without a heap allocation.
#[derive(Default)]
struct Tried {
    first: [usize; 4],
    len: usize,
    more: Vec<usize>,
}

impl Tried {
    fn push(&mut self, b: usize) {
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = b,
            None => self.more.push(b),
        }
        self.len += 1;
    }

    fn contains(&self, b: &usize) -> bool {
        self.first[..self.len.min(4)].contains(b) || self.more.contains(b)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Runs the attempts of one call: `attempt(b)` sends it to endpoint `b` and waits. Returns
/// the answer and the endpoint that gave it (or the last one tried).
pub(super) fn run<E: Endpoint>(
    endpoints: &[E],
    r: &Rules<'_>,
    attempt: &mut dyn FnMut(usize) -> Attempt,
) -> (Out, Option<usize>) {
    let mut tried = Tried::default();
    let mut last: Option<(Out, usize)> = None;
    let give_up = |last: Option<(Out, usize)>| last.map(|(o, b)| (o, Some(b))).unwrap_or_else(|| (timeout_out(), None));
    loop {
        if !tried.is_empty() && (r.now)() >= r.hard {
            return give_up(last);
        }
        // Choose the next candidate by peeking only: nothing is reserved until the call.
        let usable = |b: usize| !tried.contains(&b) && endpoints.get(b).is_some_and(Endpoint::routable);
        let (b, pick) = match r.balancer {
            Some(bal) => match bal.pick(r.sticky, |i| r.members.get(i).is_some_and(|m| usable(*m))) {
                Some(p) => (r.members[p.index()], Some(p)),
                None => return exhausted(last, r.owner, &tried),
            },
            // A lone candidate is tried whatever its state, so the caller learns why it is down.
            None => {
                match r.plan.order.iter().find(|b| !tried.contains(b) && (r.plan.order.len() == 1 || usable(**b))) {
                    Some(b) => (*b, None),
                    None => return exhausted(last, r.owner, &tried),
                }
            }
        };
        let Some(ep) = endpoints.get(b) else { return exhausted(last, r.owner, &tried) };
        if !tried.is_empty() {
            if !r.budget.try_spend((r.now)()) {
                log::warn!(target: "mcprouter::session", "retry budget exhausted; not trying {}", ep.name());
                return match last {
                    Some((o, b)) => (o, Some(b)),
                    None => exhausted(None, r.owner, &tried),
                };
            }
            (r.extra)(r.plan.is_chain);
        }
        tried.push(b);
        if !ep.routable() && r.plan.order.len() == 1 && r.balancer.is_none() {
            // A lone backend that is down or unhealthy fails fast with the reason.
            return (ep.unavailable(), Some(b));
        }
        let Some(guard) = ep.breaker().try_acquire() else {
            last = Some((circuit_open(ep.name()), b));
            continue;
        };
        let outcome = attempt(b);
        drop(pick);
        match outcome {
            Attempt::Answered(out) => {
                guard.success();
                ep.observe(true);
                return (out, Some(b));
            }
            Attempt::Cancelled => {
                guard.release(BreakerOutcome::Ignored);
                return (Out::Nothing, Some(b));
            }
            Attempt::NotSent(e) => {
                guard.release(BreakerOutcome::Ignored);
                last = Some((e, b));
            }
            Attempt::Lost(e) => {
                guard.failure();
                ep.observe(false);
                last = Some((e, b));
                if !r.plan.idempotent {
                    return give_up(last);
                }
            }
        }
    }
}

/// Params rewritten for the backend (`None`: the caller's pass through as they are), and
/// the progress token put in the client's place, with its last-progress clock.
type Prepared = (Option<String>, Option<(String, Arc<AtomicU64>)>);

impl Session {
    /// Rewrites params when a name or a progress token must change; otherwise `None`, and
    /// the caller's params pass through byte for byte (lesson 4).
    fn prepare(
        &self,
        params: Option<&RawValue>,
        edit: impl FnOnce(&mut Value),
        must_edit: bool,
    ) -> Result<Prepared, Out> {
        let has_token = params.is_some_and(|p| p.get().contains("\"progressToken\""));
        let Some(p) = params.filter(|_| must_edit || has_token) else { return Ok((None, None)) };
        let Ok(mut v) = serde_json::from_str::<Value>(p.get()) else {
            return Err(invalid("params are not valid JSON"));
        };
        edit(&mut v);
        let mut token = None;
        if let Some(t) = v.pointer_mut("/_meta/progressToken")
            && let Ok(raw) = serde_json::value::to_raw_value(t)
        {
            let (mine, last) = self.core().hub.register_progress(self.shared.id, &raw);
            if let Ok(nv) = serde_json::from_str::<Value>(&mine) {
                *t = nv;
            }
            token = Some((mine, last));
        }
        Ok((Some(v.to_string()), token))
    }

    // One routed request's whole context; a struct for it would only be unpacked again.
    #[allow(clippy::too_many_arguments)]
    /// Sends a routed request to its candidates under router-assigned ids (see [`run`]):
    /// prepares the params, sets the deadlines, and makes each attempt.
    pub(super) fn dispatch(
        &self,
        v: &View,
        id: &RawValue,
        route: Route<'_>,
        method: &str,
        params: Option<&RawValue>,
        edit: impl FnOnce(&mut Value),
        must_edit: bool,
    ) -> (Out, Option<usize>) {
        // One clock read serves the limits and the call's deadline.
        let began = Instant::now();
        let _permit = match self.admit(v, route.owner, began) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        let core = self.core();
        let (rewritten, token) = match self.prepare(params, edit, must_edit) {
            Ok(x) => x,
            Err(out) => return (out, None),
        };
        let send = rewritten.as_deref().or(params.map(RawValue::get));
        let plan = self.plan(v, &route, method);
        v.budget.deposit();

        let first_timeout = plan
            .order
            .first()
            .and_then(|b| v.backends.get(*b))
            .map_or(v.config.router.request_timeout(), |b| b.timeout);
        let max_call = v.config.router.max_call_ms;
        let hard = if max_call > 0 {
            began + Duration::from_millis(max_call).max(first_timeout)
        } else {
            began + first_timeout
        };
        // One hard deadline for the whole call, whatever the number of attempts; each
        // attempt also has its backend's (inactivity) timeout, which progress extends.
        let attempt_deadline = |timeout: Duration| Deadline {
            soft: Instant::now() + timeout,
            hard,
            activity: token.as_ref().map(|(_, last)| (Arc::clone(last), core.hub.base, timeout)),
        };
        let members = v.owners.get(route.owner).map(|o| o.members.as_slice()).unwrap_or_default();
        let rules = Rules {
            plan: &plan,
            members,
            balancer: v.balancers.get(route.owner).and_then(Option::as_ref).filter(|_| plan.is_pool),
            sticky: Some(crate::balance::fnv1a64(self.shared.client_id.as_bytes())),
            budget: &v.budget,
            hard,
            owner: v.owners.get(route.owner).map_or("?", |o| o.name.as_str()),
            now: &Instant::now,
            extra: &|chain| if chain { core.metrics.fallback() } else { core.metrics.retry() },
        };
        // The backend each attempt reached (a per-session connection is not in the view).
        let mut reached = None;
        let mut attempt = |b: usize| {
            reached = None;
            let Some(template) = v.backends.get(b) else { return Attempt::NotSent(timeout_out()) };
            let backend = match self.connection_for(v, template) {
                Ok(c) => c,
                Err(out) => return Attempt::NotSent(out),
            };
            reached = Some(backend.id);
            if let Some((t, _)) = &token {
                core.hub.bind_progress(t, backend.id);
            }
            if self.shared.is_cancelled(id.get()) {
                return Attempt::Cancelled;
            }
            let ticket = match backend.start_call(method, send, self.shared.id) {
                Ok(t) => t,
                Err(e) => return Attempt::NotSent(Out::call_failed(&e, backend.name())),
            };
            if !self.shared.enter_inflight(id.get(), backend.id, ticket.id) {
                // Cancelled between the check above and the send: the backend hears of it.
                backend.cancel(ticket.id, "cancelled by the client");
            }
            let r = backend.finish_call(ticket, &attempt_deadline(backend.timeout));
            self.shared.leave_inflight(id.get());
            match r {
                Ok(Ok(r)) => Attempt::Answered(Out::Ok(Box::<str>::from(r).into())),
                // An error the backend meant is an answer: never fall back on it.
                Ok(Err(e)) => Attempt::Answered(Out::backend_error(e)),
                Err(CallError::Cancelled) => Attempt::Cancelled,
                Err(e) => Attempt::Lost(Out::call_failed(&e, backend.name())),
            }
        };
        let (out, at) = run(&v.backends, &rules, &mut attempt);
        // Positions are the view's; what leaves this call names the backend by id.
        let out = (out, at.and(reached));
        if let Some((t, _)) = token {
            core.hub.unregister_progress(&t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! The rules with fake endpoints and a hand-driven clock: no processes, no sleeps.

    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::balance::{Balancer, Strategy};
    use crate::breaker::BreakerConfig;
    use crate::clock::{Clock, ManualClock};

    struct Fake {
        name: String,
        up: Cell<bool>,
        breaker: SharedBreaker,
        observed: RefCell<Vec<bool>>,
    }

    impl Endpoint for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn routable(&self) -> bool {
            self.up.get() && !matches!(self.breaker.peek(), crate::breaker::BreakerState::Open { .. })
        }
        fn unavailable(&self) -> Out {
            Out::error(jsonrpc::BACKEND_UNAVAILABLE, &format!("{} is down", self.name))
        }
        fn breaker(&self) -> &SharedBreaker {
            &self.breaker
        }
        fn observe(&self, ok: bool) {
            self.observed.borrow_mut().push(ok);
        }
    }

    /// A world of `n` endpoints, a clock, a budget and the counters the rules touch.
    struct World {
        clock: ManualClock,
        eps: Vec<Fake>,
        budget: RetryBudget,
        extras: Cell<(u32, u32)>,
        calls: RefCell<Vec<usize>>,
    }

    fn world(n: usize) -> World {
        let clock = ManualClock::new();
        let breaker = BreakerConfig { failure_threshold: 1, ..BreakerConfig::default() };
        let eps = (0..n)
            .map(|i| Fake {
                name: format!("b{i}"),
                up: Cell::new(true),
                breaker: SharedBreaker::with_clock(breaker.clone(), clock.clone()),
                observed: RefCell::new(Vec::new()),
            })
            .collect();
        let budget = RetryBudget::new(1.0, 1000.0, clock.now());
        World { clock, eps, budget, extras: Cell::new((0, 0)), calls: RefCell::new(Vec::new()) }
    }

    fn plan(order: &[usize], is_pool: bool, is_chain: bool, idempotent: bool) -> Plan<'static> {
        Plan { order: order.to_vec().into(), is_pool, is_chain, idempotent }
    }

    fn ok() -> Attempt {
        Attempt::Answered(Out::Ok("{}".into()))
    }

    fn lost() -> Attempt {
        Attempt::Lost(Out::error(jsonrpc::REQUEST_TIMEOUT, "lost"))
    }

    fn not_sent() -> Attempt {
        Attempt::NotSent(Out::error(jsonrpc::OVERLOADED, "full"))
    }

    /// The error code of an answer; 0 for a result, -1 for nothing.
    fn code(o: &Out) -> i64 {
        match o {
            Out::Ok(_) => 0,
            Out::Nothing => -1,
            Out::Err(e, _) => serde_json::from_str::<Value>(e).ok().and_then(|v| v["code"].as_i64()).unwrap_or(-2),
        }
    }

    impl World {
        /// Runs one call; `script(b, nth)` answers the `nth` attempt, made at endpoint `b`.
        fn call(
            &self,
            plan: &Plan,
            balancer: Option<&SharedBalancer>,
            script: impl Fn(usize, usize) -> Attempt,
        ) -> (i64, Option<usize>) {
            let members: Vec<usize> = (0..self.eps.len()).collect();
            let now = || self.clock.now();
            let extra = |chain: bool| {
                let (f, r) = self.extras.get();
                self.extras.set(if chain { (f + 1, r) } else { (f, r + 1) });
            };
            let rules = Rules {
                plan,
                members: &members,
                balancer,
                sticky: None,
                budget: &self.budget,
                hard: self.clock.now() + Duration::from_secs(10),
                owner: "owner",
                now: &now,
                extra: &extra,
            };
            let mut attempt = |b: usize| {
                let nth = self.calls.borrow().len();
                self.calls.borrow_mut().push(b);
                script(b, nth)
            };
            let (out, b) = run(&self.eps, &rules, &mut attempt);
            (code(&out), b)
        }

        fn calls(&self) -> Vec<usize> {
            self.calls.borrow().clone()
        }
    }

    #[test]
    fn one_backend_that_answers_is_tried_once() {
        let w = world(1);
        assert_eq!(w.call(&plan(&[0], false, false, false), None, |_, _| ok()), (0, Some(0)));
        assert_eq!(w.calls(), [0]);
        assert_eq!(*w.eps[0].observed.borrow(), [true]);
        assert_eq!(w.extras.get(), (0, 0));
    }

    #[test]
    fn an_error_the_backend_meant_is_an_answer_never_a_reason_to_move_on() {
        let w = world(2);
        let meant = || Attempt::Answered(Out::error(-32602, "bad arguments"));
        assert_eq!(w.call(&plan(&[0, 1], false, true, true), None, |_, _| meant()), (-32602, Some(0)));
        assert_eq!(w.calls(), [0]);
        assert_eq!(*w.eps[0].observed.borrow(), [true], "the backend is alive and answering");
    }

    #[test]
    fn a_chain_moves_on_after_a_call_that_was_never_sent() {
        let w = world(3);
        let r = w.call(&plan(&[0, 1, 2], false, true, false), None, |b, _| if b == 0 { not_sent() } else { ok() });
        assert_eq!(r, (0, Some(1)));
        assert_eq!(w.calls(), [0, 1]);
        assert_eq!(w.extras.get(), (1, 0), "one fallback counted");
        assert!(w.eps[0].observed.borrow().is_empty(), "a call never sent says nothing of health");
    }

    #[test]
    fn a_call_that_may_have_run_is_not_repeated_unless_idempotent() {
        let w = world(2);
        assert_eq!(w.call(&plan(&[0, 1], false, true, false), None, |_, _| lost()), (-32001, Some(0)));
        assert_eq!(w.calls(), [0], "not idempotent: one attempt");
        assert_eq!(*w.eps[0].observed.borrow(), [false]);

        let w = world(2);
        let r = w.call(&plan(&[0, 1], false, true, true), None, |b, _| if b == 0 { lost() } else { ok() });
        assert_eq!(r, (0, Some(1)));
        assert_eq!(w.calls(), [0, 1], "idempotent: tried again elsewhere");
    }

    #[test]
    fn a_chain_skips_candidates_that_are_down_without_trying_them() {
        let w = world(3);
        w.eps[0].up.set(false);
        assert_eq!(w.call(&plan(&[0, 1, 2], false, true, false), None, |_, _| ok()), (0, Some(1)));
        assert_eq!(w.calls(), [1]);
        assert_eq!(w.extras.get(), (0, 0), "skipping is not a fallback");
    }

    #[test]
    fn a_lone_backend_that_is_down_fails_fast_with_its_reason() {
        let w = world(1);
        w.eps[0].up.set(false);
        assert_eq!(w.call(&plan(&[0], false, false, false), None, |_, _| ok()), (-32000, Some(0)));
        assert!(w.calls().is_empty(), "nothing was sent");
    }

    #[test]
    fn every_candidate_down_is_unavailable() {
        let w = world(2);
        w.eps[0].up.set(false);
        w.eps[1].up.set(false);
        assert_eq!(w.call(&plan(&[0, 1], false, true, false), None, |_, _| ok()), (-32000, None));
        assert!(w.calls().is_empty());
    }

    #[test]
    fn an_open_breaker_turns_the_call_to_the_next_candidate_and_a_failure_opens_it() {
        let w = world(2);
        // failure_threshold is 1: one lost call opens b0's breaker.
        let _ = w.call(&plan(&[0], false, false, true), None, |_, _| lost());
        assert!(matches!(w.eps[0].breaker.peek(), crate::breaker::BreakerState::Open { .. }));
        w.calls.borrow_mut().clear();
        assert_eq!(w.call(&plan(&[0, 1], false, true, false), None, |_, _| ok()), (0, Some(1)));
        assert_eq!(w.calls(), [1], "the open breaker was not tried");
        // Alone and open: the breaker's own error, nothing sent.
        w.calls.borrow_mut().clear();
        assert_eq!(w.call(&plan(&[0], false, false, false), None, |_, _| ok()).0, -32000);
        assert!(w.calls().is_empty());
    }

    #[test]
    fn the_retry_budget_bounds_extra_attempts() {
        let mut w = world(3);
        w.budget = RetryBudget::new(0.0, 0.0, w.clock.now());
        while w.budget.try_spend(w.clock.now()) {}
        let r = w.call(&plan(&[0, 1, 2], false, true, false), None, |_, _| not_sent());
        assert_eq!(r, (-32003, Some(0)), "the first attempt's error, no second attempt");
        assert_eq!(w.calls(), [0]);
    }

    #[test]
    fn no_attempt_starts_after_the_hard_deadline() {
        let w = world(3);
        let r = w.call(&plan(&[0, 1, 2], false, true, true), None, |_, _| {
            w.clock.advance(Duration::from_secs(11));
            lost()
        });
        assert_eq!(r, (-32001, Some(0)));
        assert_eq!(w.calls(), [0], "the deadline passed during the first attempt");
    }

    #[test]
    fn a_cancelled_call_ends_with_no_reply_and_no_health_verdict() {
        let w = world(2);
        assert_eq!(w.call(&plan(&[0, 1], false, true, true), None, |_, _| Attempt::Cancelled), (-1, Some(0)));
        assert_eq!(w.calls(), [0]);
        assert!(w.eps[0].observed.borrow().is_empty());
        assert!(matches!(w.eps[0].breaker.peek(), crate::breaker::BreakerState::Closed));
    }

    #[test]
    fn a_pool_balances_retries_elsewhere_and_releases_every_pick() {
        let w = world(3);
        let bal = SharedBalancer::new(Balancer::new(Strategy::RoundRobin, vec![1, 1, 1]));
        let p = plan(&[0, 1, 2], true, false, false);
        // Round robin over three calls that each answer at once.
        for _ in 0..3 {
            assert_eq!(w.call(&p, Some(&bal), |_, _| ok()).0, 0);
        }
        let mut firsts = w.calls();
        firsts.sort_unstable();
        assert_eq!(firsts, [0, 1, 2]);
        // A member whose queue is full: the call goes to another, counted as a retry.
        w.calls.borrow_mut().clear();
        let r = w.call(&p, Some(&bal), |_, nth| if nth == 0 { not_sent() } else { ok() });
        assert_eq!(r.0, 0);
        assert_eq!(w.calls().len(), 2);
        assert_ne!(w.calls()[0], w.calls()[1]);
        assert_eq!(w.extras.get(), (0, 1));
        // Every path released its pick.
        w.calls.borrow_mut().clear();
        let _ = w.call(&p, Some(&bal), |_, _| lost());
        let _ = w.call(&p, Some(&bal), |_, _| Attempt::Cancelled);
        assert_eq!(bal.in_flight_all(), [0, 0, 0]);
    }

    #[test]
    fn a_pool_with_every_member_down_is_unavailable_without_an_attempt() {
        let w = world(2);
        for e in &w.eps {
            e.up.set(false);
        }
        let bal = SharedBalancer::new(Balancer::new(Strategy::RoundRobin, vec![1, 1]));
        let r = w.call(&plan(&[0, 1], true, false, false), Some(&bal), |_, _| ok());
        assert_eq!(r, (-32000, None));
        assert!(w.calls().is_empty());
        assert_eq!(bal.in_flight_all(), [0, 0]);
    }
}
