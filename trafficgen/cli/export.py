"""`trafficgen export`: a FlowSet file -> a pcap capture of protocol-valid conversations (+ labels CSV)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

_SHIPPED = "ndpi"


def _reference(value: str | None, loaded: dict):
    """A FlowSet from a file, or the shipped nDPI flows for ``ndpi``; None stays None. Each is
    read once (``loaded`` caches them by name)."""
    if value is None:
        return None
    key = value.lower() if value.lower() == _SHIPPED else value
    if key not in loaded:
        if key == _SHIPPED:
            from trafficgen.datasets import load_ndpi_apps

            loaded[key] = load_ndpi_apps()
        else:
            from trafficgen.data.flowset import FlowSet

            loaded[key] = FlowSet.read(value)
    return loaded[key]


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command("export")
    def export(
        flows_path: Path = typer.Argument(..., metavar="FLOWS", help="A FlowSet file (.parquet, .jsonl, .csv), "
                                          "e.g. from `trafficgen sample -o`."),
        out: Path = typer.Option(..., "-o", "--out", help="Output capture (.pcap)."),
        labels_out: Path | None = typer.Option(None, "--labels-out", help="Also write the labels CSV that "
                                               "`trafficgen ingest --labels` reads (needs labelled flows)."),
        linktype: str = typer.Option("ethernet", "--linktype", help="ethernet | raw (raw IP packets)."),
        payload: str = typer.Option("zeros", "--payload", help="zeros | random payload bytes (never training data)."),
        starts: str = typer.Option("rate", "--starts", help="rate: flow starts at --rate flows/s (Poisson); "
                                   "empirical: gaps between flow starts drawn from --timing-from's captures; "
                                   "flows: the flows' own start times (first_ts)."),
        rate: float = typer.Option(100.0, "--rate", help="Flow starts per second with --starts rate."),
        timing_from: str | None = typer.Option(None, "--timing-from", help="Flows without IATs draw them per class "
                                               "from these flows (a FlowSet file read from captures, or 'ndpi' "
                                               "for the shipped nDPI flows); default: fixed exponential IATs."),
        ports_from: str | None = typer.Option(None, "--ports-from", help="Learn each class's protocol and server "
                                              "port from these flows (a FlowSet file or 'ndpi')."),
        protocol: str | None = typer.Option(None, "--protocol", help="tcp | udp for every flow whose protocol "
                                            "is not recorded (overrides --ports-from); default: learned, else tcp."),
        default_port: int = typer.Option(443, "--default-port", help="Server port where none is recorded or "
                                         "learned."),
        ipv6: str = typer.Option("flows", "--ipv6", help="flows: each flow's own address family (IPv4 where "
                                 "unknown); or a fraction in [0, 1] of flows made IPv6."),
        time_resolution: str = typer.Option("us", "--time-resolution", help="us | ns timestamps."),
        keepalive: float = typer.Option(100.0, "--keepalive", help="TCP keep-alive probe interval in idle gaps "
                                        "(s); 0: none."),
        seed: int | None = typer.Option(0, "--seed", help="Random seed (addresses, ports, ISNs, drawn IATs)."),
        jobs: int = typer.Option(1, "--jobs", help="Chunks rendered at once in threads (the output does not "
                                 "depend on it)."),
    ) -> None:
        """Write flows as a pcap capture: every flow a TCP (handshake, ACKs, FIN close) or UDP conversation
        between synthetic endpoints, with correct checksums; `trafficgen ingest` reads the flows back."""
        import warnings

        from trafficgen._io import check_output_path
        from trafficgen.data.flows.pcap_writer import ExportWarning, write_pcap
        from trafficgen.data.flowset import FlowSet
        from trafficgen.errors import ConfigError

        check_output_path(out, "file")  # before reading anything
        if labels_out is not None:
            check_output_path(labels_out, "file")
            if labels_out.resolve() == out.resolve():
                raise ConfigError("--labels-out must differ from -o")
        try:
            ipv6_value: float | str = ipv6 if ipv6 == "flows" else float(ipv6)
        except ValueError:
            raise ConfigError(f"--ipv6 must be 'flows' or a fraction in [0, 1], got {ipv6!r}") from None
        flows = FlowSet.read(flows_path)
        loaded: dict = {}
        references = {"timing_from": _reference(timing_from, loaded), "ports_from": _reference(ports_from, loaded)}
        if labels_out is not None and flows.labels is None:
            raise ConfigError(f"--labels-out needs labelled flows; {flows_path} has no labels")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExportWarning)
            result = write_pcap(flows, out, linktype=linktype, payload=payload, starts=starts, rate=rate,
                                **references, protocol=protocol,
                                default_port=default_port, ipv6=ipv6_value, time_resolution=time_resolution,
                                keepalive=keepalive or None, labels_path=labels_out, progress=True,
                                n_jobs=jobs, random_state=seed)
        for w in caught:
            if issubclass(w.category, ExportWarning):
                typer.echo(f"warning: {w.message}", err=True)
        typer.echo(json.dumps(result.to_dict()))
