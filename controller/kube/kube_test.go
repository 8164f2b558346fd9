package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// fakeServer answers a pod list and, while served is set, the
// ClusterNetworkPolicy group's discovery document (404 otherwise).
func fakeServer(t *testing.T, served *atomic.Bool) *Client {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/pods", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			Items: []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"}}}})
	})
	mux.HandleFunc("/apis/"+cnpv1beta1.GroupVersion.String(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !served.Load() {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound})
			return
		}
		json.NewEncoder(w).Encode(metav1.APIResourceList{GroupVersion: cnpv1beta1.GroupVersion.String(),
			APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies", Kind: "ClusterNetworkPolicy"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := NewForConfig(&rest.Config{Host: srv.URL, QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientListsPods: the pods client lists every namespace's pods at
// /api/v1/pods and decodes the list.
func TestClientListsPods(t *testing.T) {
	c := fakeServer(t, new(atomic.Bool))
	list, err := c.Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Namespace != "a" || list.Items[0].Name != "p" {
		t.Errorf("pods %+v, want a/p", list.Items)
	}
}

// TestServerResources: the group's discovery document while it is served,
// a NotFound error (what KubeSource reads as "not served") while not.
func TestServerResources(t *testing.T) {
	var served atomic.Bool
	c := fakeServer(t, &served)
	gv := cnpv1beta1.GroupVersion.String()
	if _, err := c.ClusterNetworkPolicies().ServerResources(context.Background(), gv); !apierrors.IsNotFound(err) {
		t.Errorf("unserved group: err %v, want NotFound", err)
	}
	served.Store(true)
	list, err := c.ClusterNetworkPolicies().ServerResources(context.Background(), gv)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.APIResources) != 1 || list.APIResources[0].Name != "clusternetworkpolicies" {
		t.Errorf("resources %+v, want clusternetworkpolicies", list.APIResources)
	}
}

func TestNewForConfigRejectsQPSWithoutBurst(t *testing.T) {
	if _, err := NewForConfig(&rest.Config{Host: "http://127.0.0.1:1", QPS: 5}); err == nil {
		t.Error("QPS without Burst: no error")
	}
}
