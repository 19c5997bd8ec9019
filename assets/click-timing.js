// Single clicks on a map that is slow to pick (software rendering, a busy machine).
//
// deck.gl finds the object under the pointer synchronously when the button goes down, and counts a press as
// a click only if the button comes up within 250 ms, as measured by the clock (Date.now) when the page gets
// round to each event. The first pick after the map is drawn compiles its programs and waits for the
// renderer: 0.4-0.6 s in headless Chromium at the default demo size, longer on a busy machine. The release is
// then seen more than 250 ms after the press, however quick the click was, and the click is dropped.
//
// While a pointer event over a map is handled, this makes Date.now read the time the event happened
// (event.timeStamp) instead, so a click is judged by how long the button was really held. The clock is
// restored as soon as that event has been handled. Nothing else on the page is touched.
(() => {
  if (window.netzausbauClickTiming) return;
  window.netzausbauClickTiming = true;
  const realNow = Date.now;
  const overMap = (e) => e.target instanceof Element && e.target.closest("[data-testid='stDeckGlJsonChart']");
  for (const type of ["pointerdown", "pointermove", "pointerup", "pointercancel"]) {
    window.addEventListener(type, (e) => {
      if (!overMap(e)) return;
      const at = realNow() - Math.round(performance.now() - e.timeStamp); // the wall clock, when it happened
      Date.now = () => at;
      setTimeout(() => { Date.now = realNow; }, 0); // a new task: after every listener of this event ran
    }, { capture: true });
  }
})();
