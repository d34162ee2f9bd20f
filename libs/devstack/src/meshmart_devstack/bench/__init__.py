"""`make bench`: an open-model load generator, the bench runner and its report.

- :mod:`.arrivals`: the constant-arrival-rate generator (wrk2's model: sent on
  schedule, latency from the scheduled time) on :mod:`.http11`, a lean
  keep-alive HTTP/1.1 client;
- :mod:`.stats`: percentiles and the "sustained" verdict of a step;
- :mod:`.runner`: starts a fresh stack and measures it (see its docstring);
- :mod:`.checkout`: the checkout scenario and the no-loss audit;
- :mod:`.bare_app`: the bare FastAPI baseline; :mod:`.trivial_server`: the
  generator's own ceiling;
- :mod:`.report`: report.md, report.json and latency.png.

``python -m meshmart_devstack.bench --help`` lists the commands.
"""
