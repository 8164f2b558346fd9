package controller

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/controller/kube"
)

// KubeAuth guards HTTP endpoints the way kube-rbac-proxy does, for an agent
// that serves /metrics beyond loopback: the request's bearer token is
// reviewed by the API server (TokenReview), and the user it names must be
// allowed the request's verb on its non-resource path (SubjectAccessReview;
// e.g. a ClusterRole with nonResourceURLs ["/metrics"], verbs ["get"]).
// Answers, both ways, are kept for TTL so a scraper costs the API server
// two requests a TTL, not two a scrape. The agent's own account needs
// create on tokenreviews and subjectaccessreviews (the built-in
// system:auth-delegator ClusterRole).
type KubeAuth struct {
	// Tokens and Access create the reviews.
	Tokens kube.Creator[*authnv1.TokenReview]
	Access kube.Creator[*authzv1.SubjectAccessReview]
	TTL    time.Duration // default one minute
	// Timeout bounds one review (default 5s); an API server that does
	// not answer means 503, never access.
	Timeout time.Duration

	mu    sync.Mutex
	cache map[[sha256.Size]byte]authAnswer
	now   func() time.Time
}

type authAnswer struct {
	code int // http.StatusOK, StatusUnauthorized or StatusForbidden
	msg  string
	at   time.Time
}

// Wrap returns h behind the check.
func (k *KubeAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(token) == "" {
			http.Error(w, "Unauthorized: a bearer token is required", http.StatusUnauthorized)
			return
		}
		verb := "get"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			verb = strings.ToLower(r.Method)
		}
		a, err := k.review(r.Context(), strings.TrimSpace(token), verb, r.URL.Path)
		if err != nil {
			http.Error(w, "authorization unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if a.code != http.StatusOK {
			http.Error(w, a.msg, a.code)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (k *KubeAuth) review(ctx context.Context, token, verb, path string) (authAnswer, error) {
	now := time.Now
	if k.now != nil {
		now = k.now
	}
	ttl := k.TTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	key := sha256.Sum256([]byte(verb + "\x00" + path + "\x00" + token))
	k.mu.Lock()
	if a, ok := k.cache[key]; ok && now().Sub(a.at) < ttl {
		k.mu.Unlock()
		return a, nil
	}
	k.mu.Unlock()

	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a, err := k.ask(ctx, token, verb, path)
	if err != nil {
		return authAnswer{}, err
	}
	a.at = now()
	k.mu.Lock()
	if k.cache == nil || len(k.cache) > 1024 {
		k.cache = map[[sha256.Size]byte]authAnswer{} // bounded: a flood of bad tokens only empties it
	}
	k.cache[key] = a
	k.mu.Unlock()
	return a, nil
}

func (k *KubeAuth) ask(ctx context.Context, token, verb, path string) (authAnswer, error) {
	tr, err := k.Tokens.Create(ctx,
		&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return authAnswer{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		return authAnswer{code: http.StatusUnauthorized, msg: "Unauthorized: the token is not valid"}, nil
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := k.Access.Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return authAnswer{}, fmt.Errorf("subject access review: %w", err)
	}
	if !sar.Status.Allowed {
		return authAnswer{code: http.StatusForbidden,
			msg: fmt.Sprintf("Forbidden: user %q may not %s %s", u.Username, verb, path)}, nil
	}
	return authAnswer{code: http.StatusOK}, nil
}
