#include "stepflow/runtime/secrets.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/stat.h>

#include <doctest/doctest.h>

#include "support/temp_dir.hpp"

using namespace stepflow;
using stepflow::test::temp_dir;

namespace {

secret_key new_key() {
  auto key = secret_key::generate();
  REQUIRE_MESSAGE(key, message_of(key.error()));
  return *key;
}

json::value doc(std::string_view text) {
  auto v = parse_json(text, "test");
  REQUIRE_MESSAGE(v, message_of(v.error()));
  return std::move(*v);
}

configuration config_of(std::string_view text) {
  auto cfg = parse_configuration(doc(text), "configs/cfg.json", "cfg");
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  return std::move(*cfg);
}

constexpr std::string_view sample_config = R"({
  "name": "snow",
  "description": "ServiceNow credentials",
  "vendor_extra": 42,
  "configuration_data": [
    {"name": "host", "value": "dev.service-now.example", "encrypted": false},
    {"name": "password", "value": "hunter2-clear-text", "encrypted": true, "note": "kept"},
    {"name": "options", "value": {"api_key": "abc-clear-key", "retries": 3}, "encrypted": true},
    {"name": "port", "value": 443}
  ]
})";

std::string b64(std::string_view s) {
  static constexpr char a[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    unsigned v = (unsigned char) s[i] << 16 | (unsigned char) s[i + 1] << 8 | (unsigned char) s[i + 2];
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
  }
  if (s.size() - i == 1) {
    unsigned v = (unsigned char) s[i] << 16;
    out += {a[v >> 18], a[(v >> 12) & 63], '=', '='};
  } else if (s.size() - i == 2) {
    unsigned v = (unsigned char) s[i] << 16 | (unsigned char) s[i + 1] << 8;
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
  }
  return out;
}

} // namespace

TEST_CASE("a key file is created with mode 0600 and read back identically") {
  temp_dir dir;
  auto path = dir.file("secret.key");
  auto k1 = load_or_create_key(path);
  REQUIRE_MESSAGE(k1, message_of(k1.error()));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 65);
  auto text = read_file(path);
  REQUIRE(text);
  CHECK(text->back() == '\n');
  auto k2 = load_or_create_key(path);
  REQUIRE_MESSAGE(k2, message_of(k2.error()));
  CHECK(std::string_view(reinterpret_cast<const char*>(k1->data()), k1->size()) ==
        std::string_view(reinterpret_cast<const char*>(k2->data()), k2->size()));
  // Same key: a value encrypted with the first decrypts with the second.
  auto back = decrypt_value(*k2, encrypt_value(*k1, "same installation"));
  REQUIRE(back);
  CHECK(*back == "same installation");
  // Another file, another key; no temporary files left behind.
  auto again = load_or_create_key(dir.file("other.key"));
  REQUIRE(again);
  CHECK_FALSE(std::string_view(reinterpret_cast<const char*>(again->data()), again->size()) ==
              std::string_view(reinterpret_cast<const char*>(k1->data()), k1->size()));
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"other.key", "secret.key"});
}

TEST_CASE("concurrent first starts agree on one key") {
  temp_dir dir;
  auto path = dir.file("race.key");
  std::vector<std::string> seen(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < seen.size(); ++t)
    threads.emplace_back([&, t] {
      auto key = load_or_create_key(path);
      if (key)
        seen[t].assign(reinterpret_cast<const char*>(key->data()), key->size());
    });
  for (auto& th : threads)
    th.join();
  for (const auto& s : seen) {
    CHECK(s.size() == secret_key::size_bytes);
    CHECK(s == seen[0]);
  }
}

// Keys only come from generate() and load_or_create_key(): no all-zero keys.
static_assert(!std::is_default_constructible_v<secret_key>);

TEST_CASE("a key file of the wrong size or format is an error naming the file") {
  temp_dir dir;
  SUBCASE("too short") {
    auto path = dir.write("short.key", "abcdef\n");
    auto key = load_or_create_key(path);
    REQUIRE_FALSE(key);
    CHECK(code_of(key.error()) == errc::invalid_definition);
    CHECK(message_of(key.error()).find(path) != std::string::npos);
    CHECK(message_of(key.error()).find("7 bytes") != std::string::npos);
  }
  SUBCASE("too long") {
    auto path = dir.write("long.key", std::string(200, 'a'));
    auto key = load_or_create_key(path);
    REQUIRE_FALSE(key);
    CHECK(message_of(key.error()).find(path) != std::string::npos);
  }
  SUBCASE("not hex") {
    auto path = dir.write("nothex.key", std::string(64, 'z') + "\n");
    auto key = load_or_create_key(path);
    REQUIRE_FALSE(key);
    CHECK(message_of(key.error()).find(path) != std::string::npos);
    CHECK(message_of(key.error()).find("zzzz") == std::string::npos);
  }
  SUBCASE("a valid file without the final newline is accepted") {
    auto path = dir.write("nonl.key", std::string(64, 'a'));
    CHECK(load_or_create_key(path));
  }
  SUBCASE("a missing directory is an I/O error") {
    auto path = dir.file("missing/dir/secret.key");
    auto key = load_or_create_key(path);
    REQUIRE_FALSE(key);
    CHECK(code_of(key.error()) == errc::io_error);
    CHECK(message_of(key.error()).find(path) != std::string::npos);
  }
}

TEST_CASE("values round-trip through encrypt_value and decrypt_value") {
  auto key = new_key();
  for (std::string_view text : {std::string_view{""}, std::string_view{"p@ss:w0rd"},
                                std::string_view{"\"a json string\""}, std::string_view{"42"},
                                std::string_view{R"({"a":[1,2,{"b":null}]})"}}) {
    auto token = encrypt_value(key, text);
    CHECK(token.rfind("enc:v1:", 0) == 0);
    CHECK(is_encrypted_token(token));
    CHECK(token.find('\n') == std::string::npos);
    auto back = decrypt_value(key, token);
    REQUIRE_MESSAGE(back, message_of(back.error()));
    CHECK(*back == text);
  }
  std::string big(100000, 'x');
  auto back = decrypt_value(key, encrypt_value(key, big));
  REQUIRE(back);
  CHECK(*back == big);
}

TEST_CASE("two encryptions of the same value differ") {
  auto key = new_key();
  CHECK(encrypt_value(key, "same") != encrypt_value(key, "same"));
}

TEST_CASE("decrypting with the wrong key is an error") {
  auto token = encrypt_value(new_key(), "secret");
  auto back = decrypt_value(new_key(), token);
  REQUIRE_FALSE(back);
  CHECK(message_of(back.error()).find("wrong encryption key or corrupted value") !=
        std::string::npos);
}

TEST_CASE("a tampered token is an error") {
  auto key = new_key();
  auto token = encrypt_value(key, "secret value");
  // Flip one base64 character in the ciphertext, the nonce and the tag.
  for (size_t pos : {size_t{8}, token.size() / 2, token.size() - 4}) {
    auto bad = token;
    bad[pos] = bad[pos] == 'A' ? 'B' : 'A';
    auto back = decrypt_value(key, bad);
    REQUIRE_FALSE(back);
    CHECK(message_of(back.error()).find("cannot decrypt") != std::string::npos);
  }
}

TEST_CASE("a malformed token is an invalid argument") {
  auto key = new_key();
  for (std::string_view bad :
       {std::string_view{""}, std::string_view{"hunter2"}, std::string_view{"enc:v1:"},
        std::string_view{"enc:v1:not base64!"}, std::string_view{"enc:v1:QUJD"},
        std::string_view{"enc:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        std::string_view{"enc:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}) {
    CAPTURE(bad);
    CHECK_FALSE(is_encrypted_token(bad));
    auto back = decrypt_value(key, bad);
    REQUIRE_FALSE(back);
    CHECK(code_of(back.error()) == errc::invalid_argument);
  }
}

TEST_CASE("encrypt_configuration encrypts only encrypted entries and to_json shows tokens") {
  auto key = new_key();
  auto cfg = encrypt_configuration(key, config_of(sample_config));
  REQUIRE_MESSAGE(cfg, message_of(cfg.error()));
  CHECK(cfg->find("host")->value == "dev.service-now.example");
  CHECK(cfg->find("port")->value == 443);
  REQUIRE(cfg->find("password")->value.is_string());
  CHECK(is_encrypted_token(cfg->find("password")->value.get_string()));
  CHECK(is_encrypted_token(cfg->find("options")->value.get_string()));
  auto text = to_json(to_json(*cfg));
  CHECK(text.find("hunter2-clear-text") == std::string::npos);
  CHECK(text.find("abc-clear-key") == std::string::npos);
  CHECK(text.find(std::string(cfg->find("password")->value.get_string())) != std::string::npos);
  CHECK(text.find("dev.service-now.example") != std::string::npos);
  // Unknown keys survive.
  CHECK(text.find("vendor_extra") != std::string::npos);
  CHECK(text.find("\"note\":\"kept\"") != std::string::npos);

  SUBCASE("already-encrypted values are kept as they are") {
    auto token = std::string(cfg->find("password")->value.get_string());
    auto reparsed = config_of(to_json(to_json(*cfg)));
    auto again = encrypt_configuration(key, reparsed);
    REQUIRE(again);
    CHECK(again->find("password")->value == token.c_str());
  }
}

TEST_CASE("encrypt_configuration rebuilds configuration_data when raw lacks it") {
  auto key = new_key();
  configuration cfg;
  cfg.name = "built";
  cfg.data.push_back({"user", "admin", false});
  cfg.data.push_back({"pass", "built-clear-pass", true});
  auto enc = encrypt_configuration(key, cfg);
  REQUIRE(enc);
  auto text = to_json(to_json(*enc));
  CHECK(text.find("built-clear-pass") == std::string::npos);
  CHECK(text.find("enc:v1:") != std::string::npos);
  CHECK(text.find("\"admin\"") != std::string::npos);
  auto reparsed = parse_configuration(to_json(*enc), "api", "built");
  REQUIRE(reparsed);
  auto dec = decrypt_configuration(key, *reparsed);
  REQUIRE(dec);
  CHECK(dec->find("pass")->value == "built-clear-pass");
}

TEST_CASE("encrypt_configuration handles the bare-array form") {
  auto key = new_key();
  auto cfg = parse_configuration(
    doc(R"([{"name": "token", "value": "bare-clear-token", "encrypted": "true"}])"), "cfg.json",
    "bare");
  REQUIRE(cfg);
  auto enc = encrypt_configuration(key, *cfg);
  REQUIRE(enc);
  CHECK(to_json(to_json(*enc)).find("bare-clear-token") == std::string::npos);
}

TEST_CASE("decrypt_configuration restores the original values") {
  auto key = new_key();
  auto original = config_of(sample_config);
  auto enc = encrypt_configuration(key, original);
  REQUIRE(enc);
  // Through the store: serialise and parse again.
  auto stored = config_of(to_json(to_json(*enc)));
  auto dec = decrypt_configuration(key, stored);
  REQUIRE_MESSAGE(dec, message_of(dec.error()));
  for (const auto& e : original.data)
    CHECK(dec->find(e.name)->value == e.value);
  CHECK(to_json(*dec) == to_json(original));

  SUBCASE("with the wrong key the error names the configuration and entry") {
    auto bad = decrypt_configuration(new_key(), stored);
    REQUIRE_FALSE(bad);
    auto msg = message_of(bad.error());
    CHECK(msg.find("\"snow\"") != std::string::npos);
    CHECK(msg.find("\"password\"") != std::string::npos);
    CHECK(msg.find("wrong encryption key") != std::string::npos);
  }
}

TEST_CASE("masked never shows the clear text nor the token") {
  auto key = new_key();
  auto original = config_of(sample_config);
  for (const auto& cfg : {original, *encrypt_configuration(key, original)}) {
    auto text = to_json(masked(cfg));
    CHECK(text.find("hunter2-clear-text") == std::string::npos);
    CHECK(text.find("abc-clear-key") == std::string::npos);
    CHECK(text.find("enc:v1:") == std::string::npos);
    CHECK(text.find("\"********\"") != std::string::npos);
    CHECK(text.find("dev.service-now.example") != std::string::npos);
    CHECK(text.find("vendor_extra") != std::string::npos);
  }
  configuration built;
  built.name = "built";
  built.data.push_back({"pass", "built-clear-pass", true});
  auto text = to_json(masked(built));
  CHECK(text.find("built-clear-pass") == std::string::npos);
  CHECK(text.find("\"********\"") != std::string::npos);
}

TEST_CASE("passwords verify against their hash") {
  auto stored = hash_password("correct horse");
  CHECK(stored.rfind("pbkdf2-sha256$210000$", 0) == 0);
  CHECK(stored.find("correct horse") == std::string::npos);
  CHECK(verify_password("correct horse", stored));
  CHECK_FALSE(verify_password("correct horsE", stored));
  CHECK_FALSE(verify_password("", stored));
  CHECK(hash_password("correct horse") != stored); // random salt

  SUBCASE("malformed stored strings never verify") {
    auto bad_iterations = stored;
    bad_iterations.replace(bad_iterations.find("210000"), 6, "21x000");
    for (std::string_view bad :
         {std::string_view{""}, std::string_view{"correct horse"},
          std::string_view{"pbkdf2-sha256$210000$"}, std::string_view{bad_iterations},
          std::string_view{"pbkdf2-sha256$0$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA=="},
          std::string_view{"pbkdf2-sha256$-1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA=="},
          std::string_view{"md5$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA=="},
          std::string_view{"pbkdf2-sha256$1$!!!$AAAAAAAAAAAAAAAAAAAAAA=="},
          std::string_view{"pbkdf2-sha256$1$AAAA$AAAA"}}) {
      CAPTURE(bad);
      CHECK_FALSE(verify_password("correct horse", bad));
    }
    CHECK_FALSE(verify_password("correct horse", stored + "$extra"));
  }
}

TEST_CASE("generated passwords are 20 unambiguous characters and differ") {
  auto a = generate_password();
  auto b = generate_password();
  CHECK(a.size() == 20);
  CHECK(a != b);
  for (char c : a + b) {
    CAPTURE(c);
    CHECK(std::string_view("0O1lIo").find(c) == std::string_view::npos);
    CHECK(std::isalnum(static_cast<unsigned char>(c)));
  }
}

TEST_CASE("credential_cache verifies slowly once for repeated correct credentials") {
  credential_cache cache;
  int calls = 0;
  auto right = [&] { ++calls; return true; };
  auto wrong = [&] { ++calls; return false; };
  CHECK(cache.check("admin", "pw", right));
  CHECK(cache.check("admin", "pw", right));
  CHECK(cache.check("admin", "pw", right));
  CHECK(calls == 1);
  CHECK(cache.size() == 1);

  SUBCASE("wrong passwords always go through slow_verify and are never cached") {
    calls = 0;
    for (int i = 0; i < 3; ++i)
      CHECK_FALSE(cache.check("admin", "nope", wrong));
    CHECK(calls == 3);
    CHECK(cache.size() == 1);
  }
  SUBCASE("user and password boundaries are not ambiguous") {
    calls = 0;
    CHECK_FALSE(cache.check("adminp", "w", wrong));
    CHECK_FALSE(cache.check(std::string_view("admin\0pw", 8), "", wrong));
    CHECK(calls == 2);
  }
  SUBCASE("invalidate forgets everything") {
    cache.invalidate();
    CHECK(cache.size() == 0);
    calls = 0;
    CHECK_FALSE(cache.check("admin", "pw", wrong));
    CHECK(calls == 1);
  }
  SUBCASE("at most 64 entries are kept") {
    for (int i = 0; i < 100; ++i)
      CHECK(cache.check("admin", "pw" + std::to_string(i), right));
    CHECK(cache.size() == credential_cache::capacity);
  }
  SUBCASE("concurrent checks are safe") {
    std::atomic<int> slow{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 200; ++i)
          cache.check("user" + std::to_string(t), "pw", [&] { ++slow; return true; });
      });
    for (auto& th : threads)
      th.join();
    CHECK(slow.load() == 4); // one slow check per user
  }
}

TEST_CASE("parse_basic_auth reads user and password") {
  auto creds = parse_basic_auth("Basic " + b64("admin:s3cret"));
  REQUIRE(creds);
  CHECK(creds->first == "admin");
  CHECK(creds->second == "s3cret");

  SUBCASE("the scheme is case-insensitive and the password may contain colons") {
    auto c = parse_basic_auth("bAsIc   " + b64("em:pw:with:colons") + " ");
    REQUIRE(c);
    CHECK(c->first == "em");
    CHECK(c->second == "pw:with:colons");
  }
  SUBCASE("empty password") {
    auto c = parse_basic_auth("BASIC " + b64("admin:"));
    REQUIRE(c);
    CHECK(c->second.empty());
  }
  SUBCASE("missing padding is tolerated") {
    auto token = b64("admin:x");
    while (token.back() == '=')
      token.pop_back();
    auto c = parse_basic_auth("Basic " + token);
    REQUIRE(c);
    CHECK(c->second == "x");
  }
  SUBCASE("malformed headers") {
    for (std::string bad : {std::string{""}, std::string{"Basic"}, std::string{"Basic "},
                            "Bearer " + b64("admin:pw"), "Basics " + b64("admin:pw"),
                            "Basic " + b64("no-colon"), std::string{"Basic !!!!"},
                            "Basic " + b64("admin:pw") + " extra", "Basic" + b64("admin:pw")}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_basic_auth(bad));
    }
  }
}
