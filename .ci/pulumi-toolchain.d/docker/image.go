package docker

// docker:index/image:Image, the one resource of the @pulumi/docker 5.x SDK that
// is not a Terraform resource. This is a small implementation of its local
// build: the build context (honouring .dockerignore) is sent to the engine's
// build API, with the classic builder for builderVersion "BuilderV1" and
// BuildKit (through an API session, no buildx plugin needed) otherwise. The
// image is tagged imageName and stays on the engine; repoDigest is the local
// image ID. Pushing to a registry is not implemented: skipPush must be true.
//
// Like the published resource: a change of any input, or of any file of the
// build context (build.contextDigest, added by Check), rebuilds in place
// (update); delete leaves the image on the engine; read changes nothing;
// during preview the image is built only when buildOnPreview is true.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	buildtypes "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/moby/buildkit/session"
	"github.com/moby/go-archive"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// ImageToken is the type token of the native image resource.
const ImageToken = "docker:index/image:Image"

// Hybrid serves docker:index/image:Image itself and everything else through the bridge.
type Hybrid struct {
	pulumirpc.ResourceProviderServer // the bridged provider

	host *provider.HostClient

	mu         sync.Mutex
	dockerHost string
}

// NewHybrid wraps the bridged provider.
func NewHybrid(bridged pulumirpc.ResourceProviderServer, host *provider.HostClient) *Hybrid {
	return &Hybrid{ResourceProviderServer: bridged, host: host}
}

func isImage(urn string) bool {
	return string(resource.URN(urn).Type()) == ImageToken
}

var unmarshalOpts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true, KeepSecrets: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, unmarshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, unmarshalOpts)
}

// Configure records the provider's `host` (the engine address) and passes the call on.
func (h *Hybrid) Configure(ctx context.Context, req *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	host := ""
	if args := req.GetArgs(); args != nil {
		if v, ok := args.GetFields()["host"]; ok {
			host = v.GetStringValue()
		}
	}
	if host == "" {
		host = req.GetVariables()["docker:config:host"]
	}
	h.mu.Lock()
	h.dockerHost = host
	h.mu.Unlock()
	return h.ResourceProviderServer.Configure(ctx, req)
}

func (h *Hybrid) client() (*client.Client, error) {
	h.mu.Lock()
	host := h.dockerHost
	h.mu.Unlock()
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" && !strings.HasPrefix(host, "ssh://") {
		opts = append(opts, client.WithHost(host))
	}
	return client.NewClientWithOpts(opts...)
}

func (h *Hybrid) log(ctx context.Context, sev diag.Severity, urn, msg string) {
	if h.host != nil {
		_ = h.host.Log(ctx, sev, resource.URN(urn), msg)
	}
}

func (h *Hybrid) status(ctx context.Context, urn, msg string) {
	if h.host != nil {
		_ = h.host.LogStatus(ctx, diag.Info, resource.URN(urn), msg)
	}
}

// imageBuild is the build input, with defaults applied.
type imageBuild struct {
	Context, Dockerfile, Target, Network, Platform, BuilderVersion string
	Args                                                           map[string]*string
	AddHosts                                                       []string
	known                                                          bool // context and dockerfile are known
}

func str(m resource.PropertyMap, k string) (string, bool) {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || v.IsNull() {
		return "", true
	}
	if v.ContainsUnknowns() {
		return "", false
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return "", true
	}
	return v.StringValue(), true
}

func buildObject(inputs resource.PropertyMap) resource.PropertyMap {
	b := inputs["build"]
	if b.IsSecret() {
		b = b.SecretValue().Element
	}
	if b.IsObject() {
		return b.ObjectValue()
	}
	return resource.PropertyMap{}
}

func readBuild(inputs resource.PropertyMap) imageBuild {
	bo := buildObject(inputs)
	var b imageBuild
	ctxKnown, dfKnown := true, true
	b.Context, ctxKnown = str(bo, "context")
	if b.Context == "" {
		b.Context = "."
	}
	b.Dockerfile, dfKnown = str(bo, "dockerfile")
	if b.Dockerfile == "" {
		b.Dockerfile = filepath.Join(b.Context, "Dockerfile")
	}
	b.known = ctxKnown && dfKnown
	b.Target, _ = str(bo, "target")
	b.Network, _ = str(bo, "network")
	b.Platform, _ = str(bo, "platform")
	b.BuilderVersion, _ = str(bo, "builderVersion")
	if a := bo["args"]; a.IsObject() {
		b.Args = map[string]*string{}
		for k, v := range a.ObjectValue() {
			if v.IsSecret() {
				v = v.SecretValue().Element
			}
			if v.IsString() {
				s := v.StringValue()
				b.Args[string(k)] = &s
			}
		}
	}
	if hs := bo["addHosts"]; hs.IsArray() {
		for _, v := range hs.ArrayValue() {
			if v.IsString() {
				b.AddHosts = append(b.AddHosts, v.StringValue())
			}
		}
	}
	return b
}

func boolInput(inputs resource.PropertyMap, k string) bool {
	v := inputs[resource.PropertyKey(k)]
	return v.IsBool() && v.BoolValue()
}

// dockerignore returns the .dockerignore patterns of a context, keeping the
// Dockerfile and .dockerignore themselves (as the docker CLI does).
func dockerignore(contextDir, relDockerfile string) ([]string, error) {
	var excludes []string
	f, err := os.Open(filepath.Join(contextDir, ".dockerignore"))
	switch {
	case err == nil:
		defer f.Close()
		if excludes, err = ignorefile.ReadAll(f); err != nil {
			return nil, fmt.Errorf("reading .dockerignore: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if len(excludes) > 0 {
		excludes = append(excludes, "!"+filepath.ToSlash(relDockerfile), "!.dockerignore")
	}
	return excludes, nil
}

// relDockerfile resolves the Dockerfile against the context; it must lie inside it.
func relDockerfile(b imageBuild) (contextDir, rel string, err error) {
	contextDir, err = filepath.Abs(b.Context)
	if err != nil {
		return "", "", err
	}
	df := b.Dockerfile
	if !filepath.IsAbs(df) {
		if df, err = filepath.Abs(df); err != nil {
			return "", "", err
		}
	}
	if _, err := os.Stat(df); err != nil {
		return "", "", fmt.Errorf("could not open dockerfile %q: %w", b.Dockerfile, err)
	}
	rel, err = filepath.Rel(contextDir, df)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", "", fmt.Errorf("dockerfile %q is outside the build context %q", b.Dockerfile, b.Context)
	}
	return contextDir, rel, nil
}

// contextDigest hashes the names, modes and contents of the files sent to the
// engine, so that any change to them rebuilds the image.
func contextDigest(b imageBuild) (string, error) {
	contextDir, rel, err := relDockerfile(b)
	if err != nil {
		return "", err
	}
	excludes, err := dockerignore(contextDir, rel)
	if err != nil {
		return "", err
	}
	pm, err := patternmatcher.New(excludes)
	if err != nil {
		return "", err
	}
	var files []string
	err = filepath.WalkDir(contextDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(contextDir, p)
		if r == "." {
			return nil
		}
		skip, err := pm.MatchesOrParentMatches(filepath.ToSlash(r))
		if err != nil {
			return err
		}
		if skip {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		files = append(files, r)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, r := range files {
		p := filepath.Join(contextDir, r)
		st, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(r), st.Mode())
		switch {
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		case st.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			h.Write([]byte(t))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Check applies the defaults and adds build.contextDigest.
func (h *Hybrid) Check(ctx context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Check(ctx, req)
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	if v := news["skipPush"]; !v.ContainsUnknowns() && !(v.IsBool() && v.BoolValue()) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "skipPush",
			Reason: "this build of the docker provider builds images locally only: set skipPush: true"})
	}
	if v := news["imageName"]; v.IsNull() {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "imageName", Reason: "missing required property"})
	}
	if !news["buildOnPreview"].IsBool() {
		news["buildOnPreview"] = resource.NewBoolProperty(false)
	}
	b := readBuild(news)
	if bv := b.BuilderVersion; bv != "" && bv != "BuilderV1" && bv != "BuilderBuildKit" {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "build.builderVersion",
			Reason: fmt.Sprintf("unknown builder version %q (BuilderV1 or BuilderBuildKit)", bv)})
	}
	bo := buildObject(news).Copy()
	if b.known {
		bo["context"] = resource.NewStringProperty(b.Context)
		bo["dockerfile"] = resource.NewStringProperty(b.Dockerfile)
		digest, err := contextDigest(b)
		if err != nil {
			failures = append(failures, &pulumirpc.CheckFailure{Property: "build", Reason: err.Error()})
		} else {
			bo["contextDigest"] = resource.NewStringProperty(digest)
		}
	}
	news["build"] = resource.NewObjectProperty(bo)
	inputs, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, nil
}

// Diff: any change of the inputs (contextDigest included) rebuilds in place.
func (h *Hybrid) Diff(ctx context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Diff(ctx, req)
	}
	olds := req.GetOldInputs()
	if olds == nil {
		olds = req.GetOlds()
	}
	oldInputs, err := unmarshal(olds)
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	d := oldInputs.Diff(news)
	if d == nil || !d.AnyChanges() {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	detailed := map[string]*pulumirpc.PropertyDiff{}
	var changed []string
	for k := range d.Adds {
		detailed[string(k)] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_ADD}
		changed = append(changed, string(k))
	}
	for k := range d.Deletes {
		detailed[string(k)] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_DELETE}
		changed = append(changed, string(k))
	}
	for k := range d.Updates {
		detailed[string(k)] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_UPDATE}
		changed = append(changed, string(k))
	}
	sort.Strings(changed)
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: changed,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func previewOutputs(inputs resource.PropertyMap) resource.PropertyMap {
	out := inputs.Copy()
	for _, k := range []string{"repoDigest", "baseImageName", "context", "dockerfile", "platform", "registryServer"} {
		out[resource.PropertyKey(k)] = resource.MakeComputed(resource.NewStringProperty(""))
	}
	return out
}

func (h *Hybrid) buildOrPreview(ctx context.Context, urn string, props *structpb.Struct, preview bool) (string, *structpb.Struct, error) {
	inputs, err := unmarshal(props)
	if err != nil {
		return "", nil, err
	}
	name, _ := str(inputs, "imageName")
	if preview && (!boolInput(inputs, "buildOnPreview") || inputs.ContainsUnknowns()) {
		out, err := marshal(previewOutputs(inputs))
		return name, out, err
	}
	digest, err := h.build(ctx, urn, name, readBuild(inputs))
	if err != nil {
		return "", nil, err
	}
	b := readBuild(inputs)
	_, rel, _ := relDockerfile(b)
	out := inputs.Copy()
	registry := ""
	if r := inputs["registry"]; r.IsObject() {
		registry, _ = str(r.ObjectValue(), "server")
	}
	out["repoDigest"] = resource.NewStringProperty(digest)
	out["baseImageName"] = resource.NewStringProperty(name)
	out["imageName"] = resource.NewStringProperty(name)
	out["context"] = resource.NewStringProperty(b.Context)
	out["dockerfile"] = resource.NewStringProperty(rel)
	out["platform"] = resource.NewStringProperty(b.Platform)
	out["registryServer"] = resource.NewStringProperty(registry)
	s, err := marshal(out)
	return name, s, err
}

// build sends the context to the engine and returns the built image's ID.
func (h *Hybrid) build(ctx context.Context, urn, name string, b imageBuild) (string, error) {
	cli, err := h.client()
	if err != nil {
		return "", fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	contextDir, rel, err := relDockerfile(b)
	if err != nil {
		return "", err
	}
	excludes, err := dockerignore(contextDir, rel)
	if err != nil {
		return "", err
	}
	tarball, err := archive.TarWithOptions(contextDir, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return "", fmt.Errorf("packing the build context: %w", err)
	}
	defer tarball.Close()

	opts := buildtypes.ImageBuildOptions{
		Tags:        []string{name},
		Dockerfile:  filepath.ToSlash(rel),
		BuildArgs:   b.Args,
		Target:      b.Target,
		NetworkMode: b.Network,
		ExtraHosts:  b.AddHosts,
		Platform:    b.Platform,
		Remove:      true,
		Version:     buildtypes.BuilderV1,
	}
	if b.BuilderVersion != "BuilderV1" {
		// BuildKit through the engine's API: a session carries the build's side channels.
		sess, err := session.NewSession(ctx, "pulumi-docker-"+name)
		if err != nil {
			return "", fmt.Errorf("buildkit session: %w", err)
		}
		sessCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sess.Run(sessCtx, func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
				return cli.DialHijack(ctx, "/session", proto, meta)
			})
		}()
		defer func() { _ = sess.Close(); cancel(); <-done }()
		opts.Version = buildtypes.BuilderBuildKit
		opts.SessionID = sess.ID()
	}

	h.status(ctx, urn, fmt.Sprintf("building %s (%s)", name, map[bool]string{true: "classic builder", false: "BuildKit"}[opts.Version == buildtypes.BuilderV1]))
	resp, err := cli.ImageBuild(ctx, tarball, opts)
	if err != nil {
		return "", fmt.Errorf("building image: %w", err)
	}
	defer resp.Body.Close()

	var builtID string
	var tail []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("reading build output: %w", err)
		}
		if m.Error != nil {
			return "", fmt.Errorf("building image %s: %s\n%s", name, m.Error.Message, strings.Join(tail, "\n"))
		}
		if m.Aux != nil {
			var r buildtypes.Result
			if json.Unmarshal(*m.Aux, &r) == nil && r.ID != "" {
				builtID = r.ID
			}
		}
		if line := strings.TrimRight(m.Stream, "\n"); strings.TrimSpace(line) != "" {
			h.status(ctx, urn, line)
			tail = append(tail, line)
			if len(tail) > 20 {
				tail = tail[1:]
			}
		}
	}
	inspect, err := cli.ImageInspect(ctx, name)
	if err != nil {
		return "", fmt.Errorf("image %s not found after the build: %w", name, err)
	}
	if builtID != "" && builtID != inspect.ID {
		h.log(ctx, diag.Warning, urn, fmt.Sprintf("built %s but %s is %s", builtID, name, inspect.ID))
	}
	h.log(ctx, diag.Info, urn, fmt.Sprintf("built %s: %s", name, inspect.ID))
	return inspect.ID, nil
}

// Create builds the image (during preview only with buildOnPreview).
func (h *Hybrid) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Create(ctx, req)
	}
	id, out, err := h.buildOrPreview(ctx, req.GetUrn(), req.GetProperties(), req.GetPreview())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: out}, nil
}

// Update rebuilds the image.
func (h *Hybrid) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Update(ctx, req)
	}
	_, out, err := h.buildOrPreview(ctx, req.GetUrn(), req.GetNews(), req.GetPreview())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: out}, nil
}

// Read keeps the recorded state.
func (h *Hybrid) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Read(ctx, req)
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Inputs: req.GetInputs(), Properties: req.GetProperties()}, nil
}

// Delete leaves the image on the engine.
func (h *Hybrid) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	if !isImage(req.GetUrn()) {
		return h.ResourceProviderServer.Delete(ctx, req)
	}
	return &emptypb.Empty{}, nil
}
