// Package local implements command:local:Command with the inputs and outputs
// of the published @pulumi/command 1.x SDK: it runs a shell command on the
// machine that runs Pulumi when the resource is created, updated or deleted.
//
// Covered: create, update, delete, dir, environment, interpreter, stdin,
// triggers (replace on change), addPreviousOutputInEnv, logging; outputs
// stdout and stderr. assetPaths/archivePaths are accepted and ignored.
package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Command is the resource.
type Command struct{}

// Logging says which output streams go to the Pulumi log while the command runs.
type Logging string

const (
	LogStdout          Logging = "stdout"
	LogStderr          Logging = "stderr"
	LogStdoutAndStderr Logging = "stdoutAndStderr"
	LogNone            Logging = "none"
)

func (Logging) Values() []infer.EnumValue[Logging] {
	return []infer.EnumValue[Logging]{
		{Name: "Stdout", Value: LogStdout, Description: "Capture stdout in logs but not stderr"},
		{Name: "Stderr", Value: LogStderr, Description: "Capture stderr in logs but not stdout"},
		{Name: "StdoutAndStderr", Value: LogStdoutAndStderr, Description: "Capture stdout and stderr in logs"},
		{Name: "None", Value: LogNone, Description: "Capture no logs"},
	}
}

// Inputs of command:local:Command.
type Inputs struct {
	Create                 *string           `pulumi:"create,optional"`
	Update                 *string           `pulumi:"update,optional"`
	Delete                 *string           `pulumi:"delete,optional"`
	Dir                    *string           `pulumi:"dir,optional"`
	Environment            map[string]string `pulumi:"environment,optional"`
	Interpreter            *[]string         `pulumi:"interpreter,optional"`
	Stdin                  *string           `pulumi:"stdin,optional"`
	Triggers               *[]any            `pulumi:"triggers,optional" provider:"replaceOnChanges"`
	AddPreviousOutputInEnv *bool             `pulumi:"addPreviousOutputInEnv,optional"`
	Logging                *Logging          `pulumi:"logging,optional"`
	AssetPaths             *[]string         `pulumi:"assetPaths,optional"`
	ArchivePaths           *[]string         `pulumi:"archivePaths,optional"`
}

func (i *Inputs) Annotate(a infer.Annotator) {
	a.Describe(&i.Create, "The command to run on create.")
	a.Describe(&i.Update, "The command to run on update; when unset, create runs again.")
	a.Describe(&i.Delete, "The command to run on delete.")
	a.Describe(&i.Dir, "The directory from which to run the command.")
	a.Describe(&i.Environment, "Additional environment variables.")
	a.Describe(&i.Interpreter, "The program and arguments that run the command, default [\"/bin/sh\", \"-c\"].")
	a.Describe(&i.Stdin, "Passed to the command's standard input.")
	a.Describe(&i.Triggers, "Changes to any value here replace the resource.")
	a.Describe(&i.AddPreviousOutputInEnv, "Pass the previous stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR (default true).")
	a.SetDefault(&i.AddPreviousOutputInEnv, true)
	a.Describe(&i.Logging, "Which streams are logged while the command runs (default stdoutAndStderr).")
}

// Outputs of command:local:Command.
type Outputs struct {
	Inputs
	Stdout string `pulumi:"stdout"`
	Stderr string `pulumi:"stderr"`
}

func (c *Command) Annotate(a infer.Annotator) {
	a.Describe(c, "Runs a command on the machine that runs Pulumi.")
}

// Create runs create (if any).
func (c *Command) Create(ctx context.Context, req infer.CreateRequest[Inputs]) (infer.CreateResponse[Outputs], error) {
	state := Outputs{Inputs: req.Inputs}
	id, err := resource.NewUniqueHex(req.Name, 8, 0)
	if err != nil {
		return infer.CreateResponse[Outputs]{}, err
	}
	if req.DryRun || req.Inputs.Create == nil {
		return infer.CreateResponse[Outputs]{ID: id, Output: state}, nil
	}
	err = run(ctx, *req.Inputs.Create, state.Inputs, &state)
	return infer.CreateResponse[Outputs]{ID: id, Output: state}, err
}

// Update runs update, or create again when update is unset.
func (c *Command) Update(ctx context.Context, req infer.UpdateRequest[Inputs, Outputs]) (infer.UpdateResponse[Outputs], error) {
	state := Outputs{Inputs: req.Inputs, Stdout: req.State.Stdout, Stderr: req.State.Stderr}
	if req.DryRun {
		return infer.UpdateResponse[Outputs]{Output: state}, nil
	}
	cmd := req.Inputs.Create
	if req.Inputs.Update != nil {
		cmd = req.Inputs.Update
	}
	if cmd == nil {
		return infer.UpdateResponse[Outputs]{Output: state}, nil
	}
	err := run(ctx, *cmd, state.Inputs, &state)
	return infer.UpdateResponse[Outputs]{Output: state}, err
}

// Delete runs delete (if any), with the inputs the resource last had.
func (c *Command) Delete(ctx context.Context, req infer.DeleteRequest[Outputs]) (infer.DeleteResponse, error) {
	if req.State.Delete == nil {
		return infer.DeleteResponse{}, nil
	}
	state := req.State
	return infer.DeleteResponse{}, run(ctx, *state.Delete, state.Inputs, &state)
}

type logWriter struct {
	ctx context.Context
	buf bytes.Buffer
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// Incomplete line: keep it for the next write.
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		p.GetLogger(w.ctx).Info(strings.TrimRight(line, "\r\n"))
	}
	return len(b), nil
}

func (w *logWriter) flush() {
	if w.buf.Len() > 0 {
		p.GetLogger(w.ctx).Info(w.buf.String())
		w.buf.Reset()
	}
}

func run(ctx context.Context, command string, in Inputs, out *Outputs) error {
	interpreter := []string{"/bin/sh", "-c"}
	if in.Interpreter != nil && len(*in.Interpreter) > 0 {
		interpreter = *in.Interpreter
	}
	args := append(append([]string{}, interpreter[1:]...), command)
	cmd := exec.CommandContext(ctx, interpreter[0], args...)
	if in.Dir != nil {
		cmd.Dir = *in.Dir
	} else if wd, err := os.Getwd(); err == nil {
		cmd.Dir = wd
	}
	env := os.Environ()
	keys := make([]string, 0, len(in.Environment))
	for k := range in.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+in.Environment[k])
	}
	if in.AddPreviousOutputInEnv == nil || *in.AddPreviousOutputInEnv {
		if out.Stdout != "" {
			env = append(env, "PULUMI_COMMAND_STDOUT="+out.Stdout)
		}
		if out.Stderr != "" {
			env = append(env, "PULUMI_COMMAND_STDERR="+out.Stderr)
		}
	}
	cmd.Env = env
	if in.Stdin != nil {
		cmd.Stdin = strings.NewReader(*in.Stdin)
	}

	logging := LogStdoutAndStderr
	if in.Logging != nil {
		logging = *in.Logging
	}
	var stdout, stderr bytes.Buffer
	outLog := &logWriter{ctx: ctx}
	errLog := &logWriter{ctx: ctx}
	cmd.Stdout, cmd.Stderr = io.Writer(&stdout), io.Writer(&stderr)
	if logging == LogStdout || logging == LogStdoutAndStderr {
		cmd.Stdout = io.MultiWriter(&stdout, outLog)
	}
	if logging == LogStderr || logging == LogStdoutAndStderr {
		cmd.Stderr = io.MultiWriter(&stderr, errLog)
	}
	err := cmd.Run()
	outLog.flush()
	errLog.flush()
	out.Stdout = strings.TrimSuffix(stdout.String(), "\n")
	out.Stderr = strings.TrimSuffix(stderr.String(), "\n")
	if err != nil {
		return fmt.Errorf("%w: running %q:\n%s\n%s", err, command, out.Stdout, out.Stderr)
	}
	return nil
}
