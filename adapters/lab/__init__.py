"""`shoal lab`: a scenario run for real on network namespaces (issue 4).

- `plan`: the lab's network, derived from the scenario's config (pure), and
  the time scale applied to a scenario and its configs;
- `topology`: namespaces, veths and bridges, created and always removed;
- `server`, `client`: the programs run in the real servers' and the
  client's namespaces;
- `world`: the running lab (daemons, servers, client), its faults and what
  it observes;
- `runner`: the scenario on the wall clock, judged by `scenario.checks`.
"""
