// Command pulumi-language-nodejs stands in front of an older Node.js language host so that the CLI can
// run Node.js policy packs (`pulumi preview --policy-pack DIR`).
//
// Since 3.221 the CLI starts a policy pack through its language host's RunPlugin call, and its
// distribution no longer ships the `pulumi-analyzer-policy` launcher it used before. The language host
// CI builds (sdk 3.68.0, see .ci/versions.sh) answers RunPlugin with "not supported". This program
// starts that host as it is (next to this binary, as pulumi-language-nodejs-base), forwards every call
// to it unchanged, and answers RunPlugin for analyzers itself: it runs
// `node @pulumi/pulumi/cmd/run-policy-pack` in the pack's folder, as the launcher and today's host do,
// with the stack's configuration in the environment variables the Node.js policy SDK reads.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	sdk "github.com/pulumi/pulumi/sdk/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// baseHostName is the older language host's file name, next to this binary.
const baseHostName = "pulumi-language-nodejs-base"

// maxMessageSize matches the CLI's limit for plugin messages (programs with large state).
const maxMessageSize = 400 * 1024 * 1024

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs (policy shim): %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	basePath := filepath.Join(filepath.Dir(self), baseHostName)

	// The base host takes the same flags and engine address, and prints its port first.
	base := exec.Command(basePath, os.Args[1:]...)
	base.Stderr = os.Stderr
	baseOut, err := base.StdoutPipe()
	if err != nil {
		return err
	}
	if err := base.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", basePath, err)
	}
	defer func() { _ = base.Process.Kill(); _ = base.Wait() }()
	reader := bufio.NewReader(baseOut)
	line, err := reader.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the port of %s: %w", basePath, err)
	}
	basePort, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return fmt.Errorf("%s printed %q where its port was expected", basePath, line)
	}
	go func() { _, _ = io.Copy(os.Stdout, reader) }()

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", basePort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
	if err != nil {
		return err
	}
	defer conn.Close()

	h := &shim{base: pulumirpc.NewLanguageRuntimeClient(conn), conn: conn}
	cancel := make(chan bool, 1)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() { <-signals; cancel <- true }()
	baseExited := make(chan error, 1)
	go func() { baseExited <- base.Wait() }()

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init: func(srv *grpc.Server) error {
			srv.RegisterService(&runPluginOnly, h)
			return nil
		},
		Options: []grpc.ServerOption{
			grpc.ForceServerCodec(passthroughCodec{}),
			grpc.UnknownServiceHandler(h.forward),
			grpc.MaxSendMsgSize(maxMessageSize),
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%d\n", handle.Port)

	select {
	case err := <-handle.Done:
		return err
	case err := <-baseExited:
		if err != nil {
			return fmt.Errorf("%s exited: %w", basePath, err)
		}
		return nil
	}
}

// runPluginOnly registers RunPlugin of the LanguageRuntime service; every other method of it is unknown
// to this server and goes to forward.
var runPluginOnly = grpc.ServiceDesc{
	ServiceName: pulumirpc.LanguageRuntime_ServiceDesc.ServiceName,
	HandlerType: (*pulumirpc.LanguageRuntimeServer)(nil),
	Streams:     runPluginStream(),
	Metadata:    pulumirpc.LanguageRuntime_ServiceDesc.Metadata,
}

func runPluginStream() []grpc.StreamDesc {
	for _, s := range pulumirpc.LanguageRuntime_ServiceDesc.Streams {
		if s.StreamName == "RunPlugin" {
			return []grpc.StreamDesc{s}
		}
	}
	panic("the LanguageRuntime service has no RunPlugin stream")
}

type shim struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	base pulumirpc.LanguageRuntimeClient
	conn *grpc.ClientConn
}

// frame is a message forwarded as it came, without decoding.
type frame struct{ payload []byte }

// passthroughCodec leaves forwarded frames as bytes and encodes the messages this server handles itself
// as protobuf, the codec gRPC uses by default.
type passthroughCodec struct{}

func (passthroughCodec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return f.payload, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cannot encode %T", v)
	}
	return proto.Marshal(m)
}

func (passthroughCodec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.payload = append([]byte(nil), data...)
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cannot decode into %T", v)
	}
	return proto.Unmarshal(data, m)
}

func (passthroughCodec) Name() string { return "proto" }

// forward relays one call, unary or streaming, to the base host and its answer (status included) back.
func (h *shim) forward(_ any, downstream grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(downstream)
	if !ok {
		return errors.New("no method in the stream")
	}
	ctx, cancel := context.WithCancel(downstream.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		md = md.Copy()
		delete(md, ":authority")
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	upstream, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method,
		grpc.ForceCodec(passthroughCodec{}))
	if err != nil {
		return err
	}

	requestsDone := make(chan error, 1)
	go func() {
		for {
			f := &frame{}
			if err := downstream.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					requestsDone <- upstream.CloseSend()
				} else {
					requestsDone <- err
				}
				return
			}
			if err := upstream.SendMsg(f); err != nil {
				requestsDone <- err
				return
			}
		}
	}()

	first := true
	for {
		f := &frame{}
		err := upstream.RecvMsg(f)
		if first {
			// Headers come before the first message, or with an error.
			if md, herr := upstream.Header(); herr == nil {
				_ = downstream.SendHeader(md)
			}
			first = false
		}
		if errors.Is(err, io.EOF) {
			downstream.SetTrailer(upstream.Trailer())
			return nil
		}
		if err != nil {
			downstream.SetTrailer(upstream.Trailer())
			return err
		}
		if err := downstream.SendMsg(f); err != nil {
			return err
		}
		select {
		case err := <-requestsDone:
			if err != nil {
				return err
			}
		default:
		}
	}
}

// RunPlugin runs policy packs; other plugins are the base host's business.
func (h *shim) RunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	if req.GetKind() != string(apitype.AnalyzerPlugin) {
		return h.forwardRunPlugin(req, server)
	}
	ctx := server.Context()
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()

	dir := req.GetInfo().GetProgramDirectory()
	node, err := exec.LookPath("node")
	if err != nil {
		return errors.New("node is not on PATH: install Node.js to run a policy pack")
	}
	launcher, err := resolveModule(ctx, node, dir, "@pulumi/pulumi/cmd/run-policy-pack")
	if err != nil {
		return fmt.Errorf("the policy pack's dependencies are not installed (run `npm ci` in %s): %w", dir, err)
	}

	// The engine sends the stack's configuration to the analyzer it starts; the proxy takes that call,
	// so that the pack can be started with it in its environment, then relays everything to the pack.
	proxy, packStdout, err := sdk.NewPolicyProxy(ctx, stdout)
	if err != nil {
		return fmt.Errorf("starting the policy proxy: %w", err)
	}
	config, err := proxy.AwaitConfiguration(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the stack configuration: %w", err)
	}
	env, err := policyEnv(req.GetEnv(), config)
	if err != nil {
		return err
	}

	// The engine address and flags, then the pack's folder, which run-policy-pack takes last.
	args := append([]string{launcher}, req.GetArgs()...)
	args = append(args, dir)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = packStdout, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", launcher, err)
	}
	if err := proxy.Attach(ctx, cmd); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("the policy pack exited with code %d", exit.ExitCode())
		}
		return fmt.Errorf("attaching to the policy pack: %w", err)
	}
	return closer.Close()
}

// policyEnv adds the stack's identity and configuration in the variables the Node.js SDK reads.
func policyEnv(base []string, config *pulumirpc.AnalyzerStackConfigureRequest) ([]string, error) {
	env := append([]string(nil), base...)
	if config == nil {
		return env, nil
	}
	set := func(name, value string) {
		if value != "" {
			env = append(env, name+"="+value)
		}
	}
	set("PULUMI_NODEJS_ORGANIZATION", config.GetOrganization())
	set("PULUMI_NODEJS_PROJECT", config.GetProject())
	set("PULUMI_NODEJS_STACK", config.GetStack())
	set("PULUMI_NODEJS_DRY_RUN", strconv.FormatBool(config.GetDryRun()))
	if len(config.GetConfig()) > 0 {
		encoded, err := json.Marshal(config.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("encoding the stack configuration: %w", err)
		}
		set("PULUMI_CONFIG", string(encoded))
	}
	if len(config.GetConfigSecretKeys()) > 0 {
		encoded, err := json.Marshal(config.GetConfigSecretKeys())
		if err != nil {
			return nil, fmt.Errorf("encoding the secret configuration keys: %w", err)
		}
		set("PULUMI_CONFIG_SECRET_KEYS", string(encoded))
	}
	return env, nil
}

// resolveModule asks node where a module is, from a folder, as a require() there would find it.
func resolveModule(ctx context.Context, node, dir, module string) (string, error) {
	cmd := exec.CommandContext(ctx, node, "-e", "process.stdout.write(require.resolve(process.argv[1]))", module)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("cannot resolve %s: %s", module, firstLine(stderr.String(), err))
	}
	return string(out), nil
}

func firstLine(text string, fallback error) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "Cannot find module") {
			return strings.TrimSpace(line)
		}
	}
	return fallback.Error()
}

// forwardRunPlugin relays a RunPlugin call for any other kind of plugin to the base host.
func (h *shim) forwardRunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	stream, err := h.base.RunPlugin(server.Context(), req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := server.Send(msg); err != nil {
			return err
		}
	}
}
