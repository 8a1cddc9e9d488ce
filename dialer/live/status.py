"""Watch the floor: Prometheus metrics and a live status page for a running campaign.

Operations teams already run a monitoring stack, and a floor supervisor wants one page to keep open; neither
should have to read MQTT. :class:`StatusServer` serves, on one port:

* ``/metrics``: Prometheus text (``prometheus_client``): agents by state, calls by state, dials, answers,
  abandonment (today and the whole run) against the cap, the engine's decision time per event, the trunk capacity
  pacing is held to, and for a dispatcher its workers (live, silent, offline);
* ``/status.json``: the same as one JSON document;
* ``/``: a page that polls ``/status.json`` every second and draws it (no build step: one HTML file with a little
  plain JavaScript).

Why a snapshot: the engine lives on the asyncio loop and must not be read from the HTTP server's threads while
it changes. A loop task copies what the page and the metrics need every ``interval`` seconds (default 0.5 s) into
an immutable dict; the server threads only ever read the latest copy.

The engine's decision time is measured by wrapping ``engine.handle`` (the runtime looks it up on every event), so
what is timed is exactly the work done per event: the state change and the policy's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from dialer.engine.state import AgentState, CallState

if TYPE_CHECKING:
    from dialer.distributed.dispatcher import Dispatcher
    from dialer.live.runtime import AsyncRuntime

_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class FloorStatus:
    """What the page and the metrics show, copied from the engine (and a dispatcher) on the loop.

    ``cap``: the abandonment cap the rates are drawn against; ``alerts``: a list the caller appends alert texts
    to (shown as they come). ``campaign``: the name shown on the page.
    """

    def __init__(
        self,
        runtime: AsyncRuntime,
        *,
        campaign: str = "",
        cap: float = 0.03,
        dispatcher: Dispatcher | None = None,
        alerts: list[str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.campaign = campaign
        self.cap = cap
        self.dispatcher = dispatcher
        self.alerts = alerts if alerts is not None else []
        self.decisions = 0
        self.decision_seconds = 0.0
        self.decision_buckets = [0] * (len(_BUCKETS) + 1)
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._time_handle()
        self.refresh()

    def _time_handle(self) -> None:
        engine = self.engine
        handle = engine.handle

        def timed(event: Any) -> Any:
            start = time.perf_counter()
            try:
                return handle(event)
            finally:
                spent = time.perf_counter() - start
                self.decisions += 1
                self.decision_seconds += spent
                for i, bound in enumerate(_BUCKETS):
                    if spent <= bound:
                        self.decision_buckets[i] += 1
                        break
                else:
                    self.decision_buckets[-1] += 1

        engine.handle = timed  # type: ignore[method-assign]

    def refresh(self) -> None:
        """Copy the current state (on the loop's thread)."""
        engine = self.engine
        stats = engine.stats
        now = engine.now
        day = stats.day(now)
        totals = stats.totals
        day_rate = day.abandoned / day.live_answers if day.live_answers else 0.0
        total_rate = totals.abandoned / totals.live_answers if totals.live_answers else 0.0
        policy = engine.policy
        estimates: dict[str, float] = {}
        for name in ("answer_rate", "time_to_answer", "handle_time"):
            value = getattr(getattr(policy, name, None), "value", None)
            if isinstance(value, int | float):
                estimates[name] = float(value)
        observed = {
            "answer_rate": (totals.live_answers + totals.machine_answers) / totals.dials if totals.dials else None,
        }
        doc: dict[str, Any] = {
            "campaign": self.campaign,
            "time": time.time(),
            "dialing": engine.dialing,
            "policy": policy.name,
            "agents": {s.value: engine.agent_counts.get(s, 0) for s in AgentState if s is not AgentState.LOGGED_OUT},
            "calls": {s.value: engine.call_counts.get(s, 0) for s in CallState if s is not CallState.ENDED},
            "in_flight": engine.in_flight,
            "capacity": engine.config.max_in_flight,
            "totals": {
                "dials": totals.dials,
                "live_answers": totals.live_answers,
                "machine_answers": totals.machine_answers,
                "abandoned": totals.abandoned,
                "connects": totals.connects,
            },
            "abandonment": {
                "cap": self.cap,
                "day": {"abandoned": day.abandoned, "live_answers": day.live_answers, "rate": day_rate},
                "total": {"abandoned": totals.abandoned, "live_answers": totals.live_answers, "rate": total_rate},
                "over_cap": day_rate > self.cap or total_rate > self.cap,
            },
            "forecast": estimates,
            "observed": observed,
            "decisions": {
                "count": self.decisions,
                "seconds": self.decision_seconds,
                "buckets": list(self.decision_buckets),
            },
            "alerts": list(self.alerts[-20:]) + [f"{t:.0f}: {what}" for t, what in engine.faults[-20:]],
        }
        if self.dispatcher is not None:
            d = self.dispatcher
            live = [w for w, info in d.workers.items() if d.live(info)]
            silent = [w for w, info in d.workers.items() if info.online and info.silent]
            offline = [w for w, info in d.workers.items() if not info.online]
            doc["workers"] = {
                "live": len(live),
                "silent": len(silent),
                "offline": len(offline),
                "names": sorted(d.workers),
                "free": d.free_capacity,
            }
        with self._lock:
            self._latest = doc

    @property
    def latest(self) -> dict[str, Any]:
        with self._lock:
            return self._latest

    async def run(self, interval: float = 0.5) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        while True:
            self.refresh()
            await asyncio.sleep(interval)

    # -- Prometheus ----------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        """A ``prometheus_client`` collector: the latest snapshot as metric families."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        doc = self.latest
        agents = GaugeMetricFamily("dialer_agents", "Agents by state", labels=["state"])
        for state, n in doc["agents"].items():
            agents.add_metric([state], n)
        yield agents
        calls = GaugeMetricFamily("dialer_calls", "Calls in flight by state", labels=["state"])
        for state, n in doc["calls"].items():
            calls.add_metric([state], n)
        yield calls
        totals = doc["totals"]
        yield CounterMetricFamily("dialer_dials", "Calls launched", value=totals["dials"])
        answers = CounterMetricFamily("dialer_answers", "Answered calls", labels=["by"])
        answers.add_metric(["person"], totals["live_answers"])
        answers.add_metric(["machine"], totals["machine_answers"])
        yield answers
        yield CounterMetricFamily("dialer_abandoned", "Abandoned calls", value=totals["abandoned"])
        rate = GaugeMetricFamily("dialer_abandonment_rate", "Abandoned / live answers, per window", labels=["window"])
        rate.add_metric(["day"], doc["abandonment"]["day"]["rate"])
        rate.add_metric(["total"], doc["abandonment"]["total"]["rate"])
        yield rate
        yield GaugeMetricFamily(
            "dialer_abandonment_cap", "The cap the rates are held to", value=doc["abandonment"]["cap"]
        )
        yield GaugeMetricFamily("dialer_in_flight", "Calls ringing or answered", value=doc["in_flight"])
        if doc["capacity"] is not None:
            yield GaugeMetricFamily("dialer_capacity", "Calls pacing may have in flight", value=doc["capacity"])
        yield GaugeMetricFamily("dialer_dialing", "1 while launching calls", value=1.0 if doc["dialing"] else 0.0)
        dec = doc["decisions"]
        cumulative, buckets = 0, []
        for bound, n in zip((*_BUCKETS, float("inf")), dec["buckets"], strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "dialer_decision_seconds", "Engine time per event (state change and the pacing decision)",
            buckets=buckets, sum_value=dec["seconds"],
        )  # fmt: skip
        workers = doc.get("workers")
        if workers is not None:
            health = GaugeMetricFamily("dialer_workers", "Dial workers by health", labels=["health"])
            for key in ("live", "silent", "offline"):
                health.add_metric([key], workers[key])
            yield health


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dialer: floor status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}
table{border-collapse:collapse;margin:0 2em 1em 0;display:inline-table;vertical-align:top}
td,th{border:1px solid #ccc;padding:.25em .7em;text-align:right}th{background:#f3f3f3;text-align:left}
.bar{background:#eee;width:16em;height:1em;position:relative}.fill{background:#3a7;height:100%}
.cap{position:absolute;top:-2px;bottom:-2px;width:2px;background:#c00}.over .fill{background:#c33}
#alerts li{color:#a00}.stale{color:#a00}
</style></head><body>
<h1>Campaign <span id="campaign"></span> <small id="state"></small></h1>
<p id="updated">waiting for the first status...</p>
<table id="agents"><tr><th colspan="2">Agents</th></tr></table>
<table id="calls"><tr><th colspan="2">Calls</th></tr></table>
<table id="level"><tr><th colspan="2">Dial level</th></tr></table>
<table id="abandon"><tr><th colspan="3">Abandonment against the cap</th></tr></table>
<table id="forecast"><tr><th>Forecast</th><th>estimate</th><th>observed</th></tr></table>
<table id="workers"><tr><th colspan="2">Workers</th></tr></table>
<h2>Alerts</h2><ul id="alerts"></ul>
<script>
function rows(id, pairs){const t=document.getElementById(id);while(t.rows.length>1)t.deleteRow(1);
 for(const [k,v,cls] of pairs){const r=t.insertRow();const a=r.insertCell();a.textContent=k;
  const b=r.insertCell();b.textContent=v;b.id=id+'-'+k.replace(/ /g,'_');if(cls)r.className=cls;}}
function pct(x){return (100*x).toFixed(2)+'%'}
async function tick(){
 try{const r=await fetch('status.json',{cache:'no-store'});const s=await r.json();
  document.getElementById('campaign').textContent=s.campaign;
  document.getElementById('state').textContent=(s.dialing?'dialing':'not dialing')+' - '+s.policy;
  document.getElementById('updated').textContent='updated '+new Date(s.time*1000).toLocaleTimeString();
  document.getElementById('updated').className='';
  rows('agents',Object.entries(s.agents));rows('calls',Object.entries(s.calls));
  rows('level',[['in flight',s.in_flight],['capacity',s.capacity===null?'-':s.capacity],['dials',s.totals.dials]]);
  const t=document.getElementById('abandon');while(t.rows.length>1)t.deleteRow(1);
  for(const w of ['day','total']){const a=s.abandonment[w];const r=t.insertRow();r.insertCell().textContent=w;
   const c=r.insertCell();c.id='abandon-'+w;c.textContent=pct(a.rate)+' ('+a.abandoned+' of '+a.live_answers+')';
   const b=r.insertCell();const scale=Math.max(2*s.abandonment.cap,a.rate,1e-9);
   b.innerHTML='<div class="bar'+(a.rate>s.abandonment.cap?' over':'')+'"><div class="fill" style="width:'+
    (100*a.rate/scale)+'%"></div><div class="cap" style="left:'+(100*s.abandonment.cap/scale)+'%"></div></div>';}
  const f=document.getElementById('forecast');while(f.rows.length>1)f.deleteRow(1);
  for(const [k,v] of Object.entries(s.forecast)){const r=f.insertRow();r.insertCell().textContent=k;
   r.insertCell().textContent=v.toFixed(3);const o=s.observed[k];r.insertCell().textContent=o==null?'-':o.toFixed(3);}
  const w=s.workers;
  rows('workers',w?[['live',w.live],['silent',w.silent],['offline',w.offline]]:[['-','no workers']]);
  const ul=document.getElementById('alerts');ul.innerHTML='';
  for(const a of s.alerts){const li=document.createElement('li');li.textContent=a;ul.appendChild(li);}
 }catch(e){const u=document.getElementById('updated');u.textContent='no status: '+e;u.className='stale';}
}
tick();setInterval(tick,1000);
</script></body></html>
"""


class StatusServer:
    """``/``, ``/status.json`` and ``/metrics`` for ``status`` on ``host:port`` (port 0: a free one), served by a
    thread so a slow scraper never holds the event loop."""

    def __init__(self, status: FloorStatus, host: str = "127.0.0.1", port: int = 0) -> None:
        from prometheus_client import CollectorRegistry

        self.status = status
        self.registry = CollectorRegistry()
        self.registry.register(status)
        handler = _handler(status, self.registry)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        address = self.httpd.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, interval: float = 0.5) -> None:
        """Serve from a thread and refresh the snapshot from the running loop."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dialer-status", daemon=True)
        self._thread.start()
        self._task = asyncio.get_running_loop().create_task(self.status.run(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(status: FloorStatus, registry: Any) -> Callable[..., BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = generate_latest(registry), CONTENT_TYPE_LATEST
            elif path == "/status.json":
                body, ctype = json.dumps(status.latest).encode(), "application/json"
            elif path in ("/", "/index.html"):
                body, ctype = _PAGE.encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the stdlib's signature
            return

    return Handler
