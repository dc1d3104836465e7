package server

import (
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Requests a web page can make. With no token, any page a user opens could POST to a daemon
// on the user's loopback (a text/plain "simple" request needs no CORS preflight), and by DNS
// rebinding — its own name resolving to 127.0.0.1 — read the answer. So:
//   - JSON routes take only `Content-Type: application/json` (415 otherwise), which a page
//     cannot send without a preflight. A request with no Content-Type is taken as JSON (for
//     clients that send none): a page can send one (a fetch of an untyped Blob), but a
//     browser always adds Origin to a cross-origin POST, and that is refused below;
//   - the Host header must name the daemon: a loopback name, or one of Options.AllowedHosts
//     (a rebinding page's requests carry the page's own host name);
//   - a request with an Origin header is refused unless Options.AllowedOrigins lists it (CORS
//     is off by default; an allowed origin gets the CORS headers, preflights included).

// checkBrowser applies the host, origin and preflight rules before anything else; it returns
// false when it has answered the request.
func (s *Server) checkBrowser(w http.ResponseWriter, r *http.Request) bool {
	if !s.hostAllowed(r.Host) {
		writeError(w, r, errorf(http.StatusForbidden, "forbidden_host", "Host %q is not an address of this server (--allowed-hosts lists the names it answers to besides loopback)", r.Host))
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || s.uiSameOrigin(r, origin) {
		return true
	}
	if !slices.Contains(s.opts.AllowedOrigins, origin) && !slices.Contains(s.opts.AllowedOrigins, "*") {
		writeError(w, r, errorf(http.StatusForbidden, "forbidden_origin", "requests from web pages of origin %q are not allowed (--allowed-origins lists the origins allowed)", origin))
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// hostAllowed: a loopback name or address, or a host of Options.AllowedHosts ("*": any).
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, a := range s.opts.AllowedHosts {
		if a == "*" || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// requireJSON answers 415 unless the request says its body is application/json (a body a web
// page can send without a CORS preflight never does); it
// returns false when it has answered.
func requireJSON(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return true
	}
	writeError(w, r, errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type %q: this route takes application/json", r.Header.Get("Content-Type")))
	return false
}
