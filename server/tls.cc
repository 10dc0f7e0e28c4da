#include "server/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/strings.h"

namespace pageowner::server {
namespace {

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioCloser>;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// Every certificate of a PEM file, in order. Errors name the flag.
absl::StatusOr<std::vector<X509*>> ReadCertificates(std::string_view flag,
                                                    const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (bio == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(Sv(flag), "=", path, ": cannot read the file"));
  }
  std::vector<X509*> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.push_back(cert);
  }
  ERR_clear_error();  // the end of the file reads as an error
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(flag), "=", path, ": no PEM certificate (BEGIN CERTIFICATE) in it"));
  }
  return certs;
}

absl::StatusOr<EVP_PKEY*> ReadKey(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (bio == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls_key=", path, ": cannot read the file"));
  }
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key=", path, ": not an unencrypted PEM private key (", OpenSslError(), ")"));
  }
  return key;
}

void FreeAll(std::vector<X509*>& certs) {
  for (X509* c : certs) X509_free(c);
  certs.clear();
}

}  // namespace

struct HttpTls::Material {
  X509* leaf = nullptr;
  STACK_OF(X509) * chain = nullptr;  // intermediates after the leaf
  EVP_PKEY* key = nullptr;
  X509_STORE* client_ca = nullptr;  // null: no client certificate asked for

  ~Material() {
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    X509_STORE_free(client_ca);
  }
};

absl::Status CheckTlsFiles(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  if (!files.enabled()) {
    if (!files.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key (mutual TLS is TLS first)");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<X509*>> certs = ReadCertificates("--tls_cert", files.cert);
  if (!certs.ok()) return certs.status();
  absl::StatusOr<EVP_PKEY*> key = ReadKey(files.key);
  absl::Status status;
  if (!key.ok()) {
    status = key.status();
  } else {
    X509* leaf = certs->front();
    if (X509_check_private_key(leaf, *key) != 1) {
      ERR_clear_error();
      status = absl::InvalidArgumentError(
          absl::StrCat("--tls_key=", files.key, ": does not match --tls_cert=", files.cert));
    } else if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat("--tls_cert=", files.cert, ": the certificate has expired"));
    } else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat("--tls_cert=", files.cert, ": the certificate is not valid yet"));
    }
    EVP_PKEY_free(*key);
  }
  FreeAll(*certs);
  if (!status.ok() || files.client_ca.empty()) return status;
  absl::StatusOr<std::vector<X509*>> cas = ReadCertificates("--tls_client_ca", files.client_ca);
  if (!cas.ok()) return cas.status();
  FreeAll(*cas);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpTls>> HttpTls::Load(TlsFiles files) {
  auto tls = std::unique_ptr<HttpTls>(new HttpTls(std::move(files)));
  if (absl::Status s = tls->Reload(); !s.ok()) return s;
  return tls;
}

HttpTls::~HttpTls() = default;

absl::Status HttpTls::Reload() {
  if (absl::Status s = CheckTlsFiles(files_); !s.ok()) return s;
  auto m = std::make_shared<Material>();
  absl::StatusOr<std::vector<X509*>> certs = ReadCertificates("--tls_cert", files_.cert);
  if (!certs.ok()) return certs.status();
  m->leaf = certs->front();
  m->chain = sk_X509_new_null();
  for (size_t i = 1; i < certs->size(); ++i) sk_X509_push(m->chain, (*certs)[i]);
  absl::StatusOr<EVP_PKEY*> key = ReadKey(files_.key);
  if (!key.ok()) return key.status();
  m->key = *key;
  if (!files_.client_ca.empty()) {
    absl::StatusOr<std::vector<X509*>> cas = ReadCertificates("--tls_client_ca", files_.client_ca);
    if (!cas.ok()) return cas.status();
    m->client_ca = X509_STORE_new();
    for (X509* ca : *cas) {
      X509_STORE_add_cert(m->client_ca, ca);
      X509_free(ca);
    }
  }
  absl::MutexLock lock(&mu_);
  material_ = std::move(m);
  return absl::OkStatus();
}

std::shared_ptr<const HttpTls::Material> HttpTls::Current() const {
  absl::MutexLock lock(&mu_);
  return material_;
}

int HttpTls::OnCertificate(SSL* ssl, void* self) {
  const std::shared_ptr<const Material> m = static_cast<HttpTls*>(self)->Current();
  // SSL_use_* and SSL_set1_* take their own references: the connection keeps what it started
  // with when a Reload replaces the material.
  if (SSL_use_certificate(ssl, m->leaf) != 1 || SSL_use_PrivateKey(ssl, m->key) != 1 ||
      SSL_set1_chain(ssl, m->chain) != 1) {
    return 0;
  }
  if (m->client_ca != nullptr) {
    if (SSL_set1_verify_cert_store(ssl, m->client_ca) != 1) return 0;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
  }
  return 1;
}

bool HttpTls::Configure(SSL_CTX* ctx) {
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return false;
  SSL_CTX_set_cert_cb(ctx, &HttpTls::OnCertificate, this);
  return true;
}

}  // namespace pageowner::server
