package realtime

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"path"
	"strings"

	"github.com/tornago/tornago/loop"
)

// The browser client: tornago.js (an ES module, also the SharedWorker that
// shares one connection between a browser's tabs) and its TypeScript
// declarations.
//
//go:embed js/tornago.js js/tornago.d.ts
var jsFiles embed.FS

// jsAsset is one embedded file, ready to serve: its bytes, type and a
// strong ETag (a hash of the content, which changes with every build that
// changes the file).
type jsAsset struct {
	data  []byte
	ctype string
	etag  string
}

var jsAssets = loadJSAssets()

func loadJSAssets() map[string]jsAsset {
	m := map[string]jsAsset{}
	for name, ctype := range map[string]string{
		"tornago.js":   "text/javascript; charset=utf-8",
		"tornago.d.ts": "application/typescript; charset=utf-8",
	} {
		data, err := jsFiles.ReadFile("js/" + name)
		if err != nil {
			panic("realtime: embedded " + name + ": " + err.Error()) // a build without the file
		}
		sum := sha256.Sum256(data)
		m[name] = jsAsset{data: data, ctype: ctype, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	}
	return m
}

// Goroutine-safe; the Handler it returns runs on the loop, like every handler.
// JSHandler serves the browser client: a request whose path ends in
// /tornago.js gets the module (Content-Type text/javascript), one ending in
// /tornago.d.ts its TypeScript declarations; anything else 404. GET and
// HEAD only (others 405). Responses carry an ETag and Cache-Control:
// no-cache, so browsers revalidate and get 304 Not Modified until the
// server runs another version. Routes mounts it at /tornago.js; mount it
// at /tornago.d.ts too to serve the declarations:
//
//	app.Handle("/tornago.js", realtime.JSHandler())
//	app.Handle("/tornago.d.ts", realtime.JSHandler())
func JSHandler() loop.Handler {
	return loop.HandlerFunc(serveJS)
}

func serveJS(r *loop.Request) {
	a, ok := jsAssets[path.Base(r.Path)]
	if !ok {
		r.SendError(404)
		return
	}
	if r.Method != "GET" && r.Method != "HEAD" {
		r.SetHeader("Allow", "GET, HEAD")
		r.SendError(405)
		return
	}
	r.SetHeader("ETag", a.etag)
	r.SetHeader("Cache-Control", "no-cache")
	if etagMatches(r.Header("If-None-Match"), a.etag) {
		r.SetStatus(304)
		r.Finish()
		return
	}
	r.SetHeader("Content-Type", a.ctype)
	r.SetHeader("X-Content-Type-Options", "nosniff")
	// Written for HEAD too: the loop drops the body and keeps the length.
	r.Write(a.data)
	r.Finish()
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2).
func etagMatches(inm, etag string) bool {
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
