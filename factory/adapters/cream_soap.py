"""The CREAM CE wire format: SOAP 1.1 document/literal, as the CREAM2 and gridsite delegation WSDLs define it.

Only what the factory uses: JobRegister (autoStart false, with a lease and a delegation),
JobStart, JobInfo, JobList, JobCancel, JobSuspend, JobResume, JobPurge, setLease, and the
delegation service's getProxyReq, putProxy, renewProxyReq.  Messages are plain element
trees: a request element named ``<Operation>Request`` holding the operation's fields,
answered by ``<Operation>Response`` or a SOAP fault naming the CREAM fault type
(JobUnknownFault, LeaseIdMismatchFault, DelegationIdMismatchFault, AuthorizationFault,
InvalidArgumentFault, GenericFault).

Defined once here for the adapter and for the test stand-in of a CE (tests/support).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_CREAM = "http://glite.org/2007/11/ce/cream/types"
NS_DELEGATION = "http://www.gridsite.org/namespaces/delegation-2"
CREAM_PATH = "/ce-cream/services/CREAM2"
DELEGATION_PATH = "/ce-cream/services/gridsite-delegation"

#: CREAM job states (the CREAM user's guide, appendix "job states")
STATES = (
    "REGISTERED",
    "PENDING",
    "IDLE",
    "RUNNING",
    "REALLY-RUNNING",
    "HELD",
    "DONE-OK",
    "DONE-FAILED",
    "CANCELLED",
    "ABORTED",
)
TERMINAL = frozenset({"DONE-OK", "DONE-FAILED", "CANCELLED", "ABORTED"})

Value = Union[str, "Node"]


@dataclass
class Node:
    """An element's children, in order; repeated names are repeated entries."""

    children: list[tuple[str, Value]] = field(default_factory=list)

    def add(self, name: str, value: Value | int | bool | None) -> Node:
        if value is None:
            return self
        if isinstance(value, bool):
            value = "true" if value else "false"
        self.children.append((name, value if isinstance(value, Node) else str(value)))
        return self

    def all(self, name: str) -> Iterator[Value]:
        return (value for key, value in self.children if key == name)

    def nodes(self, name: str) -> list[Node]:
        return [value for value in self.all(name) if isinstance(value, Node)]

    def text(self, name: str, default: str = "") -> str:
        for value in self.all(name):
            return value if isinstance(value, str) else default
        return default

    def texts(self, name: str) -> list[str]:
        return [value for value in self.all(name) if isinstance(value, str)]

    def node(self, name: str) -> Node:
        found = self.nodes(name)
        return found[0] if found else Node()


class SoapFault(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def _build(parent: ET.Element, node: Node) -> None:
    for name, value in node.children:
        child = ET.SubElement(parent, name)
        if isinstance(value, Node):
            _build(child, value)
        else:
            child.text = value


def envelope(element: str, body: Node, namespace: str = NS_CREAM) -> bytes:
    root = ET.Element(f"{{{NS_SOAP}}}Envelope")
    soap_body = ET.SubElement(root, f"{{{NS_SOAP}}}Body")
    _build(ET.SubElement(soap_body, f"{{{namespace}}}{element}"), body)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def fault(kind: str, message: str) -> bytes:
    root = ET.Element(f"{{{NS_SOAP}}}Envelope")
    element = ET.SubElement(ET.SubElement(root, f"{{{NS_SOAP}}}Body"), f"{{{NS_SOAP}}}Fault")
    ET.SubElement(element, "faultcode").text = "soapenv:Server"
    ET.SubElement(element, "faultstring").text = message
    ET.SubElement(ET.SubElement(element, "detail"), f"{{{NS_CREAM}}}{kind}").text = message
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read(element: ET.Element) -> Value:
    if len(element) == 0:
        return element.text or ""
    node = Node()
    for child in element:
        node.children.append((_local(child.tag), _read(child)))
    return node


def parse(data: bytes) -> tuple[str, Node]:
    """(the body element's name, its content); a SOAP fault raises SoapFault."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SoapFault("InvalidArgumentFault", f"not XML: {exc}") from None
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None or len(body) == 0:
        raise SoapFault("InvalidArgumentFault", "no SOAP body")
    element = body[0]
    if _local(element.tag) == "Fault":
        detail = element.find("detail")
        kind = _local(detail[0].tag) if detail is not None and len(detail) else "GenericFault"
        raise SoapFault(kind, element.findtext("faultstring") or "")
    content = _read(element)
    return _local(element.tag), content if isinstance(content, Node) else Node()


def job_ids(ids: Iterable[str], url: str) -> Node:
    """A JobFilter: the jobs an operation applies to."""
    node = Node()
    for job_id in ids:
        node.add("jobId", Node().add("id", job_id).add("creamURL", url))
    return node
