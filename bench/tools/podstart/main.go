// podstart times B8's pod start as the three CRI calls themselves:
// RunPodSandbox, CreateContainer and StartContainer, over one gRPC
// connection made before the clock starts. crictl, which B8 also times,
// pays a process start-up and a connection for each call.
//
//	podstart -endpoint unix:///run/containerd/containerd.sock -handler H pod.json ctr.json
//
// The configs are crictl's JSON (the CRI messages' field names). It prints
// one JSON object: the pod and container ids and each call's milliseconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type result struct {
	Pod       string  `json:"pod"`
	Container string  `json:"container"`
	RunMs     float64 `json:"run_ms"`
	CreateMs  float64 `json:"create_ms"`
	StartMs   float64 `json:"start_ms"`
	TotalMs   float64 `json:"total_ms"`
}

func load(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func run() error {
	endpoint := flag.String("endpoint", "", "the CRI socket (unix:///path)")
	handler := flag.String("handler", "", "the runtime handler")
	timeout := flag.Duration("timeout", 2*time.Minute, "for the three calls together")
	flag.Parse()
	if *endpoint == "" || flag.NArg() != 2 {
		return fmt.Errorf("usage: podstart -endpoint unix:///SOCKET [-handler H] POD.json CONTAINER.json")
	}
	var pod cri.PodSandboxConfig
	var ctr cri.ContainerConfig
	if err := load(flag.Arg(0), &pod); err != nil {
		return err
	}
	if err := load(flag.Arg(1), &ctr); err != nil {
		return err
	}
	target := *endpoint
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Connect (and learn that the runtime answers) before timing anything.
	if _, err := client.Version(ctx, &cri.VersionRequest{}); err != nil {
		return fmt.Errorf("Version: %w", err)
	}

	var res result
	t0 := time.Now()
	ran, err := client.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: &pod, RuntimeHandler: *handler})
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	t1 := time.Now()
	res.Pod = ran.PodSandboxId
	created, err := client.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: res.Pod, Config: &ctr, SandboxConfig: &pod,
	})
	if err != nil {
		return fmt.Errorf("CreateContainer: %w (pod %s)", err, res.Pod)
	}
	t2 := time.Now()
	res.Container = created.ContainerId
	if _, err := client.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: res.Container}); err != nil {
		return fmt.Errorf("StartContainer: %w (pod %s)", err, res.Pod)
	}
	t3 := time.Now()
	res.RunMs, res.CreateMs, res.StartMs, res.TotalMs = ms(t1.Sub(t0)), ms(t2.Sub(t1)), ms(t3.Sub(t2)), ms(t3.Sub(t0))
	return json.NewEncoder(os.Stdout).Encode(res)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podstart:", err)
		os.Exit(1)
	}
}
