// What `portcullis --help` prints.

export const USAGE = `usage: portcullis serve --lan IFACE [--lan IFACE ...] --wan IFACE [--wan IFACE ...] [options]
       portcullis status [--state-dir DIR] [--json]
       portcullis ls [--state-dir DIR] [--json]            (or: portcullis list)
       portcullis rm ID [--state-dir DIR]
       portcullis rm --client ADDR [--port N] [--state-dir DIR]
       portcullis doctor [--config FILE] [--lan IFACE ...] [--wan IFACE ...] [--external-ip ADDR]
                         [--upstream-pcp ADDR|auto|off]
                         [--nft-table NAME] [--nft-embed] [--policy FILE] [--admin ADDR:PORT]
       portcullis pcp map --server ADDR --proto udp|tcp --port N [pcp options]
       portcullis pcp announce --server ADDR
       portcullis policy check FILE
       portcullis policy explain FILE --client ADDR --proto udp|tcp --port N [explain options]
       portcullis policy reload [--state-dir DIR]
       portcullis admin-password          (the password typed twice, or one line on stdin)

Serves PCP (RFC 6887) and NAT-PMP (RFC 6886) on the LAN interfaces' addresses
and installs the mappings it grants in the firewall.

options:
  --lan IFACE            LAN interface to serve (repeatable)
  --wan IFACE            WAN interface (repeatable: one WAN zone, e.g. DS-Lite's native
                         IPv6 link and its softwire, --wan wan0 --wan ds0); the external
                         address is the first IPv4 address of the first one that has one
  --external-ip ADDR     external IPv4 address, instead of the WAN interface's
  --upstream-pcp ADDR[:PORT]|auto|off
                         the ISP's PCP server (CGN, DS-Lite AFTR) IPv4 mappings are relayed
                         to (RFC 7648); auto (default): only behind the ISP's NAT, the
                         discovered server if it answers
  --no-nat44             DS-Lite B4 (RFC 6333): this router does no NAT44; IPv4 mappings
                         are the AFTR's, asked for the LAN host (THIRD_PARTY), and only
                         admitted here. The softwire is then the WAN with IPv4 (give the
                         native IPv6 WAN beside it: --wan wan0 --wan ds0); needs --upstream-pcp
  --lan-route PREFIX     a prefix routed behind the LAN interfaces that third-party
                         mappings may point into (an AFTR's subscribers); repeatable
  --state-dir DIR        where state is kept (default /var/lib/portcullis)
  --flush-on-exit        remove granted entries from the kernel on exit (default: they expire)
  --config FILE          JSON configuration file (flags override it)
  --policy FILE          admin policy file
  --backend nft|memory   firewall backend
  --nft-table NAME       nftables table (default portcullis, created and owned by portcullis)
  --nft-embed            add portcullis' chains and sets to the existing table --nft-table
                         instead (e.g. --nft-table fw4 --nft-embed); the admin jumps to them
  --port N               UDP port for PCP/NAT-PMP (default 5351; for tests)
  --min-lifetime S       shortest lifetime granted (default 120)
  --max-lifetime S       longest lifetime granted (default 86400)
  --no-announce          do not multicast announcements at start
  --no-upnp              do not serve UPnP IGD (SSDP on UDP 1900, HTTP on --upnp-port)
  --upnp-port N          TCP port of UPnP descriptions and control (default 5000)
  --dhcp-leases FILE     dnsmasq's lease file (OpenWrt: /tmp/dhcp.leases): mappings end
                         with their host's DHCP lease, and ls names devices by it
  --metrics ADDR:PORT    serve Prometheus metrics at http://ADDR:PORT/metrics
                         (a loopback or LAN address)
  --admin ADDR:PORT      serve the admin API at http://ADDR:PORT/api (a LAN or loopback
                         address; its bearer token is in STATE/admin.token)
  --log-level LEVEL      debug, info (default), warn or error
  --log-format FORMAT    json or pretty (default: pretty on a terminal, JSON otherwise)
  -h, --help             this text
  --version              print the version

pcp options (a PCP client, for checking a router; prints the response as JSON):
  --server ADDR          the router's LAN address
  --lifetime S           requested lifetime (default 3600; 0 deletes)
  --suggest N            suggested external port
  --filter PREFIX[:PORT] admit only this remote (repeatable; PCP FILTER; IPv6 as [PREFIX]:PORT)
  --prefer-failure       only the suggested port will do
  --nonce HEX            24 hex digits (default: random)
  --description TEXT     RFC 7220 description
  --server-port N        default 5351
  --bind ADDR            send from this local address (e.g. a global address to a fe80:: server)

explain options (what the daemon would decide for one request):
  --client ADDR          the address asking (required)
  --proto udp|tcp        (required)
  --port N               internal port (required)
  --via pcp|natpmp|upnp  asking protocol (default pcp)
  --for ADDR             the host the mapping is for (a third-party request)
  --external-port N      an external port the client insists on
  --interface IFACE      the LAN interface the client is on
  --peer                 a PCP PEER request instead of MAP
  --remote PREFIX        a remote peer the mapping is restricted to (repeatable)

status, ls, rm and policy reload talk to the running daemon through
DIR/control.sock (default /var/lib/portcullis); SIGHUP also reloads the policy.

  status   version, uptime, epoch, mappings by origin and family, the LAN guard,
           the last firewall repair, the store's size, recent errors. No daemon:
           says so, counts what the store holds, exit 3.
  ls       one row per mapping: ID (for rm), DEVICE (DHCP host name or link-layer
           address, - when unknown), PROTO, EXTERNAL → INTERNAL, ORIGIN, LEFT,
           DESCRIPTION. No daemon: the store as last written, without IDs or devices.
  rm       removes as the admin: one mapping by ID, or a client's (on internal
           port N). Static forwards are the policy file's and stay. Nothing
           matched: exit 1; no daemon: exit 3.
  admin-password
           prints the config line "passwordHash": "scrypt$…" for the admin page's
           password: asked twice without echo on a terminal, else the first line
           of standard input (never an argument: ps would show it); at least 8
           characters, at most 1024 bytes.
  doctor   checks the system for what serve needs, with the settings serve would
           use (config file and flags); with the admin page on, whether the
           daemon may write the policy file and its directory (the page's Open
           and Remove edit it; the installed systemd unit's sandbox counts too);
           exit 1 if a check failed.
`;
