// Command argocd-health runs Argo CD resource health checks (Lua) the way the Argo CD application
// controller does (argo-cd util/lua: VM.ExecuteHealthLua), so that the chart's scripts are tested
// in the interpreter Argo CD embeds (gopher-lua, Lua 5.1) and not only read.
//
//	argocd-health -dir charts/odoo-db-operator/files/argocd < objects.yaml
//	argocd-health -script odoodatabase.lua < object.json
//
// With -dir, each object's script is <dir>/<lower-case kind>.lua, as Argo CD picks the script of
// resource.customizations.health.<group>_<Kind>. Objects come on stdin (JSON, YAML, several
// documents or a List); one JSON line per object goes to stdout: {"kind","name","status","message"}.
// A script error is reported in "error" and makes the exit status 1.
//
// What is reproduced from Argo CD: the libraries a script from argocd-cm gets by default (package,
// base, table; every standard library with -open-libs, which is resource.customizations.useOpenLibs),
// the global obj converted as Argo CD converts it (objects become tables, arrays 1-based tables,
// integers numbers, JSON null nil), the 1 s time limit, and the reading of the returned table
// (JSON-encoded, then status/message; a status outside Argo CD's set becomes Unknown).
// Not reproduced: Argo CD's restricted os library (os.time, os.date); our scripts do not use it,
// so a script that started to would fail here.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"

	"odoo-db-operator/hack/tools/gitops/internal/objects"
)

// The health codes Argo CD accepts from a script (gitops-engine pkg/health).
var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

const invalidHealthStatus = "Lua returned an invalid health status"

func main() {
	script := flag.String("script", "", "one health script for every object")
	dir := flag.String("dir", "", "a folder of scripts named <lower-case kind>.lua")
	openLibs := flag.Bool("open-libs", false, "open every standard library (resource.customizations.useOpenLibs)")
	flag.Parse()
	if (*script == "") == (*dir == "") {
		fmt.Fprintln(os.Stderr, "usage: argocd-health (-script FILE | -dir DIR) [-open-libs] < objects")
		os.Exit(2)
	}
	objs, err := objects.Read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading objects:", err)
		os.Exit(2)
	}
	failed := false
	for _, obj := range objs {
		result := objects.ResultFor(obj)
		path := *script
		if path == "" {
			path = filepath.Join(*dir, strings.ToLower(obj.GetKind())+".lua")
		}
		source, err := os.ReadFile(path)
		if err == nil {
			result.Status, result.Message, err = health(obj, string(source), *openLibs)
		}
		if err != nil {
			result.Error = err.Error()
			failed = true
		}
		objects.Print(os.Stdout, result)
	}
	if failed {
		os.Exit(1)
	}
}

// health runs one script on one object and reads its answer as Argo CD does.
func health(obj *unstructured.Unstructured, script string, openLibs bool) (string, string, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	returned := L.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return "", "", nil
	case lua.LTTable:
	default:
		return "", "", fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return "", "", err
	}
	var hs struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return "", "", err
	}
	if !validStatus[hs.Status] {
		return "Unknown", invalidHealthStatus, nil
	}
	return hs.Status, hs.Message, nil
}

// toLua converts a decoded object the way Argo CD's decodeValue does.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []interface{}:
		arr := L.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(L, item))
		}
		return arr
	case map[string]interface{}:
		tbl := L.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(L, item))
		}
		return tbl
	}
	return lua.LNil
}
