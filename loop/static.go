package loop

import (
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"
)

// httpTimeFormat is the IMF-fixdate of RFC 9110 5.6.7 (net/http's TimeFormat).
const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// Goroutine-safe; the Handler it returns runs on the loop, like every handler.
// StaticFiles returns a Handler serving the files of fsys (os.DirFS(dir), an
// embed.FS, ...) under a route with one capture group, the path inside fsys:
//
//	app.Handle(`/static/(.*)`, loop.StaticFiles(os.DirFS("public")))
//
// It answers GET and HEAD (others get 405) with Content-Type by extension
// (mime.TypeByExtension, else application/octet-stream), Content-Length,
// Last-Modified (when the file has a modification time) and an ETag made of
// size and modification time (size and a content hash for files without one,
// such as embed.FS's), and answers 304 Not Modified to a matching
// If-None-Match or, without it, If-Modified-Since. Paths that fs.ValidPath
// rejects (any "..", ".", empty or backslash element) and directories get 404;
// a directory with an index.html is served as that file.
//
// Like every handler it runs on the loop, and it opens and reads
// the whole file there, synchronously, holding it in memory: fine for small
// files (embedded assets, a few hundred KiB from a local disk), not for large
// files or slow or network file systems, which would stall every connection;
// serve those from a dedicated server, or read them with RunInExecutor.
func StaticFiles(fsys fs.FS) Handler {
	return HandlerFunc(func(r *Request) { serveStatic(fsys, r) })
}

func serveStatic(fsys fs.FS, r *Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		r.SetHeader("Allow", "GET, HEAD")
		r.SendError(405)
		return
	}
	name := ""
	if len(r.PathArgs) > 0 {
		name = r.PathArgs[len(r.PathArgs)-1]
	}
	name = strings.TrimSuffix(name, "/") // "dir/" names the directory
	if name == "" {
		name = "."
	}
	if !fs.ValidPath(name) || strings.Contains(name, `\`) {
		r.SendError(404)
		return
	}
	data, info, err := readStatic(fsys, name)
	if err != nil {
		r.SendError(404)
		return
	}
	if info.IsDir() {
		data, info, err = readStatic(fsys, path.Join(name, "index.html"))
		if err != nil || info.IsDir() {
			r.SendError(404)
			return
		}
		name = path.Join(name, "index.html")
	}
	if !info.Mode().IsRegular() {
		r.SendError(404)
		return
	}
	mtime := info.ModTime()
	var etag string
	if mtime.IsZero() {
		h := fnv.New64a()
		h.Write(data)
		etag = `"` + strconv.FormatInt(info.Size(), 16) + "-h" + strconv.FormatUint(h.Sum64(), 16) + `"`
	} else {
		etag = `"` + strconv.FormatInt(info.Size(), 16) + "-" + strconv.FormatInt(mtime.UnixNano(), 16) + `"`
		r.SetHeader("Last-Modified", mtime.UTC().Format(httpTimeFormat))
	}
	r.SetHeader("ETag", etag)
	if notModified(r, etag, mtime) {
		r.SetStatus(304)
		r.Finish()
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	r.SetHeader("Content-Type", ct)
	// Written for HEAD too: Content-Length is the file's; the body is dropped.
	r.Write(data)
	r.Finish()
}

func readStatic(fsys fs.FS, name string) ([]byte, fs.FileInfo, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if info.IsDir() {
		return nil, info, nil
	}
	if !info.Mode().IsRegular() {
		return nil, nil, errors.New("loop: not a regular file")
	}
	data, err := io.ReadAll(f)
	return data, info, err
}

// notModified applies RFC 9110 13.1.2 and 13.1.3: If-None-Match (weak
// comparison) wins over If-Modified-Since, which is compared at one-second
// precision.
func notModified(r *Request, etag string, mtime time.Time) bool {
	if inm := r.Header("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == etag {
				return true
			}
		}
		return false
	}
	ims := r.Header("If-Modified-Since")
	if ims == "" || mtime.IsZero() {
		return false
	}
	t, err := time.Parse(httpTimeFormat, ims)
	if err != nil {
		return false
	}
	return !mtime.Truncate(time.Second).After(t)
}
